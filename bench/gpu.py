"""The CUDA path on a lent GPU, in one call: ``python -m bench.gpu --data .gpu/data --out $OUT``.

Phases, in priority order, each timed and fenced (an error is recorded, the next phase runs; a phase
that would start after ``--budget-s`` is skipped and says so):

1. ``raw_b0``: raw ORT CUDA, B0 fp32/fp16 at 512², batch 1/8/32: host numpy, IOBinding, CUDA graphs;
2. ``served_ref``: the server on the CPU (``--device cpu``, fp32): the reference masks of the photos;
3. ``served_fp16`` / ``served_fp32``: the server on the GPU (``--device cuda``): providers from
   ``/v1/model``, masks over REST and gRPC vs the CPU masks, then load: gRPC streaming and REST,
   1..128 clients, one size (512² JPEGs) and mixed sizes (the photos as they are);
4. ``b5``: raw ORT B5 (random weights) fp32/fp16 at batch 1/8, and the server on B5 fp16;
5. ``memory``: device memory over mixed shapes, the server's arena (kSameAsRequested) vs ORT's default;
6. ``first_runs``: first run per new shape, ``cudnn_conv_algo_search`` HEURISTIC vs EXHAUSTIVE;
7. ``tune``: the server's batching/thread settings on CUDA, fp16, gRPC streaming at the most clients.

Writes ``gpu-results.json`` (after every phase), ``gpu-report.md`` and ``servers.log`` under ``--out``
and prints the targets table last. ``--dry-run`` runs every phase on the CPU with tiny counts (what
``tests/bench/test_gpu.py`` does); its numbers mean nothing. See docs/benchmarks/GPU.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.gpu_env import environment, export_cuda_libraries
from bench.gpu_phases import PHASES, Run
from bench.gpu_report import render, targets_table
from bench.servers import ROOT

DEFAULTS = {  # fit ~7 min on one H200 with 16 cores (the device call allows 10)
    "budget_s": 420.0,
    "duration": 3.0,
    "clients": "1,8,32,128",
    "clients_fp32": "1,32,128",
    "raw_seconds": 1.5,
    "raw_batches": "1,8,32",
    "b5_batches": "1,8",
    "b5_clients": "32,128",
    "load_procs": 4,
    "scale": 1.0,
    "memory_rounds": 2,
    "server_flags": "",
    "tune": "mb16:--max-batch-size 16;mb32:--max-batch-size 32;t2:--intra-op-threads 2;s2:--sessions 2",
}
DRY = {  # every phase on 2 shared CPU cores in about a minute
    "budget_s": 300.0,
    "duration": 0.4,
    "clients": "2",
    "clients_fp32": "2",
    "raw_seconds": 0.05,
    "raw_batches": "1,2",
    "b5_batches": "1",
    "b5_clients": "2",
    "load_procs": 2,
    "scale": 0.125,
    "memory_rounds": 1,
    "server_flags": "--sessions 1 --warmup-runs 0",
    "tune": "mb4:--max-batch-size 4",
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.gpu", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", type=Path, default=ROOT / ".gpu" / "data", help="from scripts/gpu_prepare.sh")
    p.add_argument("--out", type=Path, required=True, help="results, report, logs ($OUT on the device)")
    p.add_argument("--work", type=Path, default=Path("/tmp/bench-gpu"), help="graphs, images, load files")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--dry-run", action="store_true", help="every phase on the CPU with tiny counts")
    p.add_argument(
        "--phases", default=",".join(name for name, _ in PHASES), help="a subset (prepare always runs)"
    )
    for key, value in DEFAULTS.items():
        p.add_argument(
            f"--{key.replace('_', '-')}", type=type(value), default=None, help=f"default {value!r}"
        )
    args = p.parse_args(argv)
    base = DRY if args.dry_run else DEFAULTS
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.dry_run:
        args.device = "cpu"
    return args


def _unfit(env: dict[str, Any]) -> str | None:
    if env["missing_imports"]:
        return f"the server cannot import {env['missing_imports']} (carry the wheels: docs/benchmarks/GPU.md)"
    if env["device"] == "cuda" and "CUDAExecutionProvider" not in env["providers_available"]:
        return f"onnxruntime {env['onnxruntime']} has no CUDA provider ({env['providers_available']})"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    run = Run(args)
    if args.device == "cuda":
        print(f"[gpu] CUDA libraries from {export_cuda_libraries()}", flush=True)
    run.results["env"] = environment(args.device)
    print(f"[gpu] {json.dumps(run.results['env'])}", flush=True)
    problem = _unfit(run.results["env"])
    if problem:  # say so in seconds instead of failing every phase on the device's clock
        run.results["phases"]["env"] = {"status": "error", "error": problem}
        run.save()
        print(f"[gpu] cannot run: {problem}", flush=True)
        return 2
    wanted = {"prepare", *args.phases.split(",")}  # every other phase needs what prepare makes
    for name, body in PHASES:
        if name in wanted:
            run.phase(name, body)
    with (args.out / "servers.log").open("w") as sink:
        for log in run.server_logs:
            sink.write(f"===== {log}\n{log.read_text(errors='replace')[-200_000:]}\n")
    (args.out / "gpu-report.md").write_text(render(run.results) + "\n")
    print(render(run.results, details=False), flush=True)
    print(targets_table(run.results), flush=True)
    failed = [n for n, r in run.results["phases"].items() if r["status"] == "error"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
