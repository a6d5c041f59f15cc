"""Raw ONNX Runtime on the CUDA EP (the ceiling), in the bench process: no server, no transport.

- ``throughput``: ``session.run`` from host numpy (what the server does), IOBinding with the image
  and the mask on the device (no host copies), and CUDA graphs (``enable_cuda_graph``; in its own
  process, ``python -m bench.gpu_raw cudagraph ...``) where the graph allows them; median latency
  and images/s per batch size.
- ``first_runs``: the cost of the first run at each new shape (batch, input size, output size) with a
  given ``cudnn_conv_algo_search`` (HEURISTIC vs EXHAUSTIVE), against the same shape's steady runs.
- ``memory`` (``python -m bench.gpu_raw memory ...``, one process per setting, since CUDA memory is
  per process): device memory over a sequence of mixed shapes with the server's arena settings
  (``kSameAsRequested``) vs ORT's default (``kNextPowerOfTwo``); on the CPU (dry run) the peak RSS.

Providers and their options come from ``server.runtimes.onnxruntime.choose_providers``: the raw runs
use exactly the server's CUDA options unless a phase changes one on purpose.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bench.common import write_json
from bench.gpu_env import nvidia_smi
from bench.ortcase import make_session
from server.runtimes.onnxruntime import choose_providers
from server.settings import Settings

Shape = tuple[int, int, int, int, int]  # batch, height, width, out height, out width
# resize mode at batch 1..8 with the photos' output sizes, then native-mode inputs, then a repeat
MIXED: list[Shape] = [
    (1, 512, 512, 512, 683),
    (8, 512, 512, 512, 683),
    (4, 512, 512, 480, 640),
    (1, 480, 640, 480, 640),
    (2, 512, 672, 512, 683),
    (8, 512, 512, 400, 600),
    (1, 384, 608, 400, 600),
    (1, 1024, 1024, 1024, 1024),
]
NEW_SHAPES: list[Shape] = [MIXED[1], MIXED[2], MIXED[3], MIXED[4], (16, 512, 512, 512, 512)]


def scaled(shapes: list[Shape], scale: float) -> list[Shape]:
    """``shapes`` with every side times ``scale`` (inputs rounded to multiples of 32): dry runs."""
    if scale == 1.0:
        return list(shapes)

    def px(v: int, multiple: int) -> int:
        return max(multiple, round(v * scale / multiple) * multiple)

    return [(n, px(h, 32), px(w, 32), px(oh, 1), px(ow, 1)) for n, h, w, oh, ow in shapes]


def providers_for(device: str, **changes: str | None) -> list[Any]:
    """The server's providers for ``device``; ``changes`` set (or, with None, drop) CUDA options."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    providers = choose_providers(Settings(device="cuda"))
    name, options = providers[0]
    options = dict(options)
    for key, value in changes.items():
        if value is None:
            options.pop(key, None)
        else:
            options[key] = value
    return [(name, options), *providers[1:]]


def session(graph: Path, device: str, **changes: str | None) -> ort.InferenceSession:
    return make_session(graph, len(os.sched_getaffinity(0)), providers_for(device, **changes))


def feeds(image: np.ndarray, shape: Shape) -> dict[str, np.ndarray]:
    """``shape``'s batch of ``image`` (resized with the server's resize) and its output size."""
    from server.imaging import resize_bilinear

    n, h, w, oh, ow = shape
    batch = np.ascontiguousarray(np.stack([resize_bilinear(image, (h, w))] * n))
    return {"image": batch, "output_size": np.array([oh, ow], dtype=np.int64)}


def timed(run: Callable[[], Any], seconds: float, warmup: int = 3, min_runs: int = 5) -> dict[str, float]:
    """Median and p90 latency (ms) of ``run`` over ``seconds`` after ``warmup`` untimed runs."""
    for _ in range(warmup):
        run()
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < min_runs:
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    ms = np.asarray(times) * 1000.0
    return {"runs": len(times), "p50_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90))}


def _bound(sess: ort.InferenceSession, feed: dict[str, np.ndarray], device: str) -> Callable[[], None]:
    """``run_with_iobinding`` with the image and the mask on ``device``, allocated once.

    ``output_size`` is left at the graph's default (the input's size; an overridable initializer
    cannot be bound), so the feed's output size must be its input size.
    """
    where = "cuda" if device == "cuda" else "cpu"
    binding = sess.io_binding()
    image = ort.OrtValue.ortvalue_from_numpy(feed["image"], where, 0)
    n, h, w, _ = feed["image"].shape
    if tuple(int(v) for v in feed["output_size"]) != (h, w):
        raise ValueError("IOBinding runs use the graph's default output size (the input's)")
    mask = ort.OrtValue.ortvalue_from_shape_and_type((n, h, w), np.uint8, where, 0)
    binding.bind_ortvalue_input("image", image)
    binding.bind_ortvalue_output("mask", mask)

    def run() -> None:
        sess.run_with_iobinding(binding)
        binding.synchronize_outputs()

    return run


def throughput(
    graph: Path,
    device: str,
    image: np.ndarray,
    batches: list[int],
    seconds: float,
    modes: list[str],
    size: int = 512,
) -> list[dict[str, Any]]:
    """One row per (mode, batch): ``numpy`` (host arrays), ``iobinding``, ``cudagraph``; size² in and out."""
    rows: list[dict[str, Any]] = []
    plain = session(graph, device)
    for mode in modes:
        for batch in batches:
            row: dict[str, Any] = {"mode": mode, "batch": batch, "size": size}
            feed = feeds(image, (batch, size, size, size, size))
            try:
                if mode == "numpy":
                    row |= timed(lambda f=feed: plain.run(["mask"], f), seconds)
                elif mode == "iobinding":
                    row |= timed(_bound(plain, feed, device), seconds)
                elif device != "cuda":
                    row["error"] = "CUDA graphs need the CUDA EP"
                else:  # one session per shape: a captured graph is bound to its buffers
                    captured = session(graph, device, enable_cuda_graph="1")
                    row |= timed(_bound(captured, feed, device), seconds)
                    del captured
            except Exception as exc:  # recorded, not fatal: e.g. nodes outside the CUDA EP
                row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            if "p50_ms" in row:
                row["images_per_s"] = batch * 1000.0 / row["p50_ms"]
            rows.append(row)
            print(f"[gpu] raw {graph.name} {json.dumps(row)}", flush=True)
    return rows


def first_runs(graph: Path, device: str, image: np.ndarray, algo: str, scale: float = 1.0) -> dict[str, Any]:
    """Session creation, first-ever run, and first vs steady run per new shape with ``algo``."""
    start = time.perf_counter()
    sess = session(graph, device, cudnn_conv_algo_search=algo)
    created = time.perf_counter() - start
    first = feeds(image, scaled([(1, 512, 512, 512, 512)], scale)[0])
    start = time.perf_counter()
    sess.run(["mask"], first)
    out: dict[str, Any] = {
        "algo": algo,
        "create_s": created,
        "first_ever_ms": (time.perf_counter() - start) * 1e3,
    }
    shapes = []
    for shape in scaled(NEW_SHAPES, scale):
        feed = feeds(image, shape)
        start = time.perf_counter()
        sess.run(["mask"], feed)
        first_ms = (time.perf_counter() - start) * 1e3
        steady = timed(lambda f=feed: sess.run(["mask"], f), 0.0, warmup=0, min_runs=3)["p50_ms"]
        shapes.append({"shape": list(shape), "first_ms": first_ms, "steady_ms": steady})
    out["shapes"] = shapes
    out["extra_ms_total"] = sum(s["first_ms"] - s["steady_ms"] for s in shapes)
    print(f"[gpu] first runs {graph.name} {json.dumps(out)}", flush=True)
    return out


def device_used_mib() -> float | None:
    """Memory in use on GPU 0 (all processes), from ``nvidia-smi``; None without one."""
    used = nvidia_smi("--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0")
    return float(used.splitlines()[0]) if used else None


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def memory(graph: Path, device: str, arena: str, rounds: int, scale: float = 1.0) -> dict[str, Any]:
    """Memory after each step of ``MIXED`` (``rounds`` times) with ``arena_extend_strategy=arena``."""
    image = np.random.default_rng(0).integers(0, 256, (512, 683, 3), dtype=np.uint8)
    measure = device_used_mib if device == "cuda" else _rss_mib
    base = measure() or 0.0
    sess = session(graph, device, arena_extend_strategy=arena)
    steps = [{"step": "session", "mib": (measure() or 0.0) - base}]
    for r in range(rounds):
        for shape in scaled(MIXED, scale):
            sess.run(["mask"], feeds(image, shape))
            steps.append({"step": f"r{r} {shape}", "mib": (measure() or 0.0) - base})
    peak = max(s["mib"] for s in steps)
    unit = "device MiB over the baseline" if device == "cuda" else "peak RSS MiB (dry run)"
    return {"arena": arena, "unit": unit, "peak_mib": peak, "final_mib": steps[-1]["mib"], "steps": steps}


def memory_in_subprocess(
    graph: Path, device: str, arena: str, rounds: int, out: Path, scale: float = 1.0
) -> dict[str, Any]:
    """``memory`` in a fresh process (CUDA memory is never given back within one)."""
    cmd = [sys.executable, "-m", "bench.gpu_raw", "memory", str(graph), "--device", device]
    cmd += ["--arena", arena, "--rounds", str(rounds), "--scale", str(scale), "--out", str(out)]
    subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parent.parent, timeout=300)
    return json.loads(out.read_text())


def cuda_graphs_in_subprocess(
    graph: Path, device: str, photo: Path, batches: list[int], seconds: float, size: int, out: Path
) -> list[dict[str, Any]]:
    """``throughput`` in CUDA-graph mode in a fresh process: a crash there costs only these rows."""
    cmd = [sys.executable, "-m", "bench.gpu_raw", "cudagraph", str(graph), "--device", device]
    cmd += ["--photo", str(photo), "--batches", ",".join(map(str, batches)), "--seconds", str(seconds)]
    cmd += ["--size", str(size), "--out", str(out)]
    done = subprocess.run(cmd, cwd=Path(__file__).resolve().parent.parent, timeout=300, check=False)
    if done.returncode != 0:
        return [{"mode": "cudagraph", "batch": b, "error": f"exited with {done.returncode}"} for b in batches]
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_raw", description=__doc__)
    sub = p.add_subparsers(dest="what", required=True)
    graphs = sub.add_parser("cudagraph")
    graphs.add_argument("graph", type=Path)
    graphs.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    graphs.add_argument("--photo", type=Path, required=True)
    graphs.add_argument("--batches", default="1,8,32")
    graphs.add_argument("--seconds", type=float, default=1.5)
    graphs.add_argument("--size", type=int, default=512)
    graphs.add_argument("--out", type=Path, required=True)
    mem = sub.add_parser("memory")
    mem.add_argument("graph", type=Path)
    mem.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    mem.add_argument("--arena", default="kSameAsRequested")
    mem.add_argument("--rounds", type=int, default=2)
    mem.add_argument("--scale", type=float, default=1.0, help="shape scale (dry runs: smaller)")
    mem.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.what == "cudagraph":
        from PIL import Image

        image = np.asarray(Image.open(args.photo).convert("RGB"))
        batches = [int(b) for b in args.batches.split(",")]
        rows = throughput(args.graph, args.device, image, batches, args.seconds, ["cudagraph"], args.size)
        write_json(args.out, rows)
    else:
        write_json(args.out, memory(args.graph, args.device, args.arena, args.rounds, args.scale))


if __name__ == "__main__":
    main()
