"""The same bench on a lent GPU (CUDA EP): ``python -m bench.gpu --out $OUT`` on the device machine.

For each variant (B0, B5) and precision (fp32, fp16): export the graph there (``--no-verify``), time raw
ONNX Runtime CUDA ``session.run`` (the ceiling) at each size and batch 1/4, start ``segformer-serve
--device cuda`` on the same graph, check it picked CUDA and that its masks match the CPU masks, and drive
it over REST at each concurrency. ``512x512`` uses 512×512 JPEGs in ``resize`` mode; ``1024x2048`` uses
2048×1024 JPEGs in ``native`` mode, so server and ceiling do the same work. Prints a table last and
writes ``gpu-results.json`` and ``gpu-report.md`` under ``--out``. See docs/benchmarks/GPU.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.common import synthetic_jpegs, write_json
from bench.ortcase import make_session
from bench.servers import ROOT, export_graph, start_server

PAPER_V100 = {"b0": 50.5, "b5": 11.9}  # SegFormer paper, ADE20K 512×512, batch 1, images/s
CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def ceiling(session: Any, image: np.ndarray, batch: int, runs: int = 20) -> float:
    """Median images/s of ``session.run`` on ``batch`` copies of ``image`` (output at the input size)."""
    feed = {"image": np.stack([image] * batch), "output_size": np.array(image.shape[:2], dtype=np.int64)}
    for _ in range(5):
        session.run(["mask"], feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(["mask"], feed)
        times.append(time.perf_counter() - start)
    return batch / float(np.median(times))


def served(url: str, jpegs: list[Path], concurrency: list[int], duration: float, work: Path) -> list[dict]:
    out = []
    for c in concurrency:
        path = work / f"load-{c}.json"
        args = ["--target", "rest", "--url", url, "--concurrency", str(c), "--duration", str(duration)]
        args += ["--out", str(path), *map(str, jpegs)]
        subprocess.run([sys.executable, "-m", "bench.loadgen", *args], check=True)
        out.append(json.loads(path.read_text()))
    return out


def fetch_mask(url: str, query: str, jpeg: bytes) -> np.ndarray:
    headers = {"Content-Type": "image/jpeg"}
    request = urllib.request.Request(f"{url}/v1/segment{query}", data=jpeg, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=120) as answer:
        return np.asarray(Image.open(io.BytesIO(answer.read())))


def one(args: argparse.Namespace, variant: str, precision: str, work: Path) -> list[dict[str, Any]]:
    source = args.b0_source if variant == "b0" and args.b0_source else f"random:{variant}"
    extra = ["--fp16"] if precision == "fp16" else []
    graph = export_graph(source, work / "graphs" / f"{variant}-{precision}.onnx", extra=extra)
    fp32 = export_graph(source, work / "graphs" / f"{variant}-fp32.onnx")
    providers = CUDA if args.device == "cuda" else None
    session, cpu = make_session(graph, 4, providers), make_session(fp32, 8)
    rows = []
    for size in args.sizes:
        height, width = (int(v) for v in size.split("x"))
        jpegs = synthetic_jpegs(3, seed=1, sizes=[(width, height)])
        files = []
        for i, data in enumerate(jpegs):
            files.append(work / f"{size}-{i}.jpg")
            files[-1].write_bytes(data)
        image = np.asarray(Image.open(io.BytesIO(jpegs[0])).convert("RGB"))
        row: dict[str, Any] = {"variant": variant, "precision": precision, "size": size}
        row["providers"] = session.get_providers()
        row["ceiling_b1"], row["ceiling_b4"] = ceiling(session, image, 1), ceiling(session, image, 4)
        flags = ["--device", args.device, "--native-max-side", str(max(height, width))]
        server = start_server(graph, work / "server", len(os.sched_getaffinity(0)), flags)  # every core
        try:
            query = "" if size == "512x512" else "?mode=native"
            with urllib.request.urlopen(f"{server.url}/v1/model", timeout=10) as answer:
                row["server_providers"] = json.loads(answer.read())["providers"]
            feed = {"image": image[None], "output_size": np.array(image.shape[:2])}
            reference = cpu.run(["mask"], feed)[0][0]
            got = fetch_mask(server.url, query, jpegs[0])
            same = got.shape == reference.shape
            row["agreement_vs_cpu"] = float((got == reference).mean()) if same else 0.0
            row["load"] = served(server.url + query, files, args.concurrency, args.duration, work)
        finally:
            server.stop()
        best = max(row["load"], key=lambda r: r["images_per_s"])
        row["served_best"], row["served_best_c"] = best["images_per_s"], best["concurrency"]
        row["ratio_vs_ceiling"] = best["images_per_s"] / max(row["ceiling_b1"], row["ceiling_b4"])
        row["p50_c1_ms"] = next((r["p50_ms"] for r in row["load"] if r["concurrency"] == 1), None)
        row["paper_v100"] = PAPER_V100.get(variant) if size == "512x512" else None
        rows.append(row)
        summary = {k: v for k, v in row.items() if k != "load"}
        print(f"[gpu] {variant} {precision} {size}: {json.dumps(summary)}", flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = "| variant | precision | size | ORT CUDA b1 img/s | b4 img/s | served best img/s (c) "
    head += "| ratio (goal ≥ 0.8) | p50 c=1 ms | paper V100 img/s | server EPs | mask agreement vs CPU |"
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['precision']} | {r['size']} "
            f"| {r['ceiling_b1']:.1f} | {r['ceiling_b4']:.1f} "
            f"| {r['served_best']:.1f} ({r['served_best_c']}) | {r['ratio_vs_ceiling']:.2f} "
            f"| {r['p50_c1_ms'] or float('nan'):.1f} | {r['paper_v100'] or '—'} "
            f"| {','.join(p.replace('ExecutionProvider', '') for p in r['server_providers'])} "
            f"| {r['agreement_vs_cpu']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--work", type=Path, default=Path("/tmp/bench-gpu"))
    p.add_argument("--variants", default="b0,b5")
    p.add_argument("--precisions", default="fp32,fp16")
    p.add_argument("--sizes", default="512x512,1024x2048")
    p.add_argument("--concurrency", default="1,4,16,64")
    p.add_argument("--duration", type=float, default=6.0)
    p.add_argument("--b0-source", default=None, help="real B0 weights folder carried along (default random)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a dry run of the script")
    args = p.parse_args(argv)
    args.sizes = args.sizes.split(",")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    rows = []
    for variant in args.variants.split(","):
        for precision in args.precisions.split(","):
            rows += one(args, variant, precision, args.work / f"{variant}-{precision}")
            write_json(args.out / "gpu-results.json", rows)
    text = table(rows)
    (args.out / "gpu-report.md").write_text(text + "\n")
    print(text, flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
