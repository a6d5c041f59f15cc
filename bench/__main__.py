"""``python -m bench``: the whole side-by-side benchmark, then the table, the plots and the report.

    python -m bench --shared ../shared --triton          # what `make bench` runs (~8 min on 2 cores)
    python -m bench --model random:b0 --duration 2 ...    # anywhere, without the shared weights/photos

The model is the shared B0 ADE20K weights when ``--shared`` / ``$SEGFORMER_BENCH_SHARED`` points at them,
else ``random:b0``; the images are the shared real JPEG photos, else synthetic JPEGs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import plots, ratios
from bench import report as rep
from bench.common import real_photos, shared_dir
from bench.servers import ROOT
from bench.suite import Plan, run


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--shared", default=None, help="shared/ folder (default $SEGFORMER_BENCH_SHARED)")
    p.add_argument("--model", default=None, help="export source (default: shared B0 weights, else random:b0)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks", help="report + plots folder")
    p.add_argument("--work", type=Path, default=ROOT / ".cache" / "bench", help="graphs, logs, raw results")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for every system")
    p.add_argument("--concurrency", default="1,4,16,64")
    p.add_argument("--transports", default="rest,grpc")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per load-generator window")
    p.add_argument("--baseline-duration", type=float, default=8.0, help="seconds per in-process baseline")
    p.add_argument("--triton", action="store_true", help="also measure PyTriton (creates its venv once)")
    p.add_argument("--no-hf", action="store_true", help="skip the transformers baseline")
    p.add_argument("--no-perf-analyzer", action="store_true", help="skip the perf_analyzer (v2) runs")
    p.add_argument(
        "--no-openvino", action="store_true", help="skip raw OpenVINO bf16 and our server on OpenVINO"
    )
    p.add_argument("--upsample", choices=["topk", "full"], default="topk", help="the served graph's mode")
    p.add_argument("--no-compare", action="store_true", help="skip measuring the other upsample mode")
    p.add_argument("--fresh", action="store_true", help="re-export the graphs even if cached")
    p.add_argument("--server-arg", action="append", default=[], help="extra segformer-serve flag (repeat)")
    p.add_argument(
        "--baseline-tree",
        type=Path,
        default=None,
        help="an older commit's source tree (git archive REV | tar -x -C DIR): the output formats' PNG path "
        "and the phone-size photos side by side with it",
    )
    return p.parse_args(argv)


def _context(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next(
            (ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if "model name" in ln),
            cpu,
        )
    versions = {}
    for pkg in ("onnxruntime", "torch", "transformers", "numpy", "pillow"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    images = f"{len(plan.images)} real JPEG photos" if plan.images else "synthetic JPEGs (no shared photos)"
    return {
        "cpu": cpu,
        "load": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
        "model": Path(plan.model).name if Path(plan.model).is_dir() else plan.model,
        "upsample": plan.upsample,
        "images": images,
        "threads": plan.threads,
        "server_args": " ".join(plan.server_args),
        "duration": plan.duration,
        "baseline_duration": plan.baseline_duration,
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    shared = shared_dir(args.shared)
    weights = shared / "weights" / "segformer-b0-ade20k" if shared else None
    has_weights = weights is not None and weights.is_dir()
    model = args.model or (str(weights) if has_weights else "random:b0")
    plan = Plan(
        model=model,
        hf_source=model if Path(model).is_dir() else "random:b0",
        images=real_photos(shared),
        work=args.work.resolve(),
        threads=args.threads,
        concurrency=[int(c) for c in _csv(args.concurrency)],
        transports=_csv(args.transports),
        duration=args.duration,
        baseline_duration=args.baseline_duration,
        triton=args.triton,
        upsample=args.upsample,
        compare=not args.no_compare,
        hf=not args.no_hf,
        perf_analyzer=not args.no_perf_analyzer,
        openvino=not args.no_openvino and importlib.util.find_spec("openvino") is not None,
        fresh=args.fresh,
        server_args=args.server_arg,
        baseline_tree=args.baseline_tree.resolve() if args.baseline_tree else None,
        out=args.out,
    )
    context = _context(args, plan)
    run(plan)
    context["notes"], context["duel"], context["mixed"] = plan.notes, plan.duel, plan.mixed
    context["video"] = plan.video
    computed = ratios.compute(plan.results, plan.duel)
    print(rep.console(plan.results, computed), flush=True)
    written = plots.write_all(plan.results, args.out)
    report = args.out / "README.md"
    report.write_text(rep.markdown(plan.results, computed, context, written))
    print(f"[bench] wrote {report} and {', '.join(p.name for p in written)}", flush=True)


if __name__ == "__main__":
    main()
