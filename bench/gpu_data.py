"""What the GPU bench carries to the device machine, and how it is unpacked there.

The device machine cannot download anything, has no ``../shared`` and lacks the exporter's
dependencies (onnxscript, safetensors), and one device call carries at most 64 MiB. So everything is
exported here, into one folder (``.gpu/data``, gitignored) that the bench call carries:

- ``b0-fp32.onnx``, ``b0-fp16.onnx``: the real B0 ADE20K weights, exported as the server would
  (~14 + 7 MiB);
- ``b5-fp32.skel.onnx``, ``b5-fp16.skel.onnx``: ``random:b5`` graphs *without their weights* (B5 is
  ~330 MiB in fp32): every float initializer over 1 KiB is emptied and its shape, mean and std kept in
  its ``doc_string``; ``materialize`` refills it with seeded normal values of the same mean and std
  (timing does not depend on the values: these are random weights either way);
- ``photos/``: the real photos (ADE20K validation image + the unlabeled ones);
- ``manifest.json``: what is where, and the versions that exported it.

``python -m bench.gpu_data --shared ../shared --out .gpu/data`` (``scripts/gpu_prepare.sh`` runs it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from bench.common import real_photos, write_json
from bench.servers import ROOT, export_graph

STRIPPED = "segformer.bench.stripped:"  # doc_string prefix of an emptied initializer
FLOATS = {TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float16}
MIN_STRIP_BYTES = 1024
PRECISIONS = ("fp32", "fp16")


def skeletonize(graph: Path, out: Path, min_bytes: int = MIN_STRIP_BYTES) -> Path:
    """``graph`` without its float initializers of ``min_bytes`` or more (shape, mean and std kept)."""
    model = onnx.load(str(graph))
    for tensor in model.graph.initializer:
        if tensor.data_type not in FLOATS or not tensor.HasField("raw_data"):
            continue
        if len(tensor.raw_data) < min_bytes:
            continue
        values = numpy_helper.to_array(tensor).astype(np.float64)
        stats = {"mean": float(values.mean()), "std": float(values.std())}
        tensor.ClearField("raw_data")
        tensor.doc_string = STRIPPED + json.dumps(stats)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out


def materialize(skeleton: Path, out: Path, seed: int = 0) -> Path:
    """Refill the emptied initializers of ``skeleton`` with seeded normal values; write ``out``."""
    model = onnx.load(str(skeleton))
    rng = np.random.default_rng(seed)
    for tensor in model.graph.initializer:
        if not tensor.doc_string.startswith(STRIPPED):
            continue
        stats = json.loads(tensor.doc_string[len(STRIPPED) :])
        shape = tuple(int(d) for d in tensor.dims)
        values = rng.normal(stats["mean"], stats["std"], size=shape).astype(FLOATS[tensor.data_type])
        tensor.raw_data = values.tobytes()
        tensor.doc_string = ""
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out


def _versions() -> dict[str, str]:
    found = {}
    for name in ("torch", "onnx", "onnxruntime", "numpy"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def prepare(
    shared: Path, out: Path, b5_source: str = "random:b5", fresh: bool = False, inference_size: str = ""
) -> dict[str, Any]:
    """Export and copy everything the device run needs into ``out``; returns the manifest.

    Tests only: ``inference_size`` (``HxW``) exports smaller graphs so a CPU dry run is quick, and an
    empty ``b5_source`` lets the B0 graphs stand in for B5."""
    weights = shared / "weights" / "segformer-b0-ade20k"
    photos = real_photos(shared)
    if not weights.is_dir() or not photos:
        raise SystemExit(f"{shared} lacks weights/segformer-b0-ade20k or data/*/*.jpg")
    out.mkdir(parents=True, exist_ok=True)
    graphs: dict[str, dict[str, str]] = {"b0": {}, "b5": {}}
    for precision in PRECISIONS:
        extra = ["--fp16"] if precision == "fp16" else []
        extra += ["--inference-size", inference_size] if inference_size else []
        name = f"b0-{precision}.onnx"
        export_graph(str(weights), out / name, upsample="topk", fresh=fresh, extra=extra)
        graphs["b0"][precision] = name
        full = out.parent / f"{out.name}-b5-full" / f"b5-{precision}.onnx"  # not carried (too big)
        if b5_source:
            export_graph(b5_source, full, upsample="topk", fresh=fresh, extra=extra)
        else:  # tests: the B0 graph stands in for B5
            full = out / name
        graphs["b5"][precision] = skeletonize(full, out / f"b5-{precision}.skel.onnx").name
    (out / "photos").mkdir(exist_ok=True)
    for photo in photos:
        shutil.copyfile(photo, out / "photos" / photo.name)
    manifest = {
        "graphs": graphs,
        "b0_source": str(weights.name),
        "b5_source": b5_source or "the B0 graphs (a stand-in)",
        "upsample": "topk",
        "inference_size": inference_size or "the checkpoint's (512x512)",
        "photos": [p.name for p in photos],
        "prepared_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "versions": _versions(),
    }
    write_json(out / "manifest.json", manifest)
    return manifest


def load_graphs(data: Path, work: Path) -> dict[str, dict[str, Path]]:
    """``{variant: {precision: graph}}`` from a prepared ``data`` folder (skeletons refilled in ``work``)."""
    manifest = json.loads((data / "manifest.json").read_text())
    graphs: dict[str, dict[str, Path]] = {}
    for variant, by_precision in manifest["graphs"].items():
        graphs[variant] = {}
        for precision, name in by_precision.items():
            path = data / name
            if name.endswith(".skel.onnx"):
                path = materialize(path, work / "graphs" / name.replace(".skel.onnx", ".onnx"))
            graphs[variant][precision] = path
    return graphs


def photos(data: Path) -> list[Path]:
    return sorted((data / "photos").glob("*.jpg"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_data", description=__doc__)
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    p.add_argument("--out", type=Path, default=ROOT / ".gpu" / "data")
    p.add_argument("--b5-source", default="random:b5", help="B5's export source ('': B0 stands in)")
    p.add_argument("--fresh", action="store_true", help="re-export even when the graphs are up to date")
    p.add_argument("--inference-size", default="", help="HxW of smaller graphs for CPU dry runs (tests)")
    args = p.parse_args(argv)
    manifest = prepare(args.shared.resolve(), args.out, args.b5_source, args.fresh, args.inference_size)
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(json.dumps(manifest["graphs"]), f"{size / 2**20:.1f} MiB in {args.out}", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
