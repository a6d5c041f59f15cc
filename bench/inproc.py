"""In-process baselines, each run in its own process so CPU and peak RSS are its own.

``python -m bench.inproc ort GRAPH --batch 1 --output mask|logits|pipeline --threads 2 --out R.json [JPEGs]``
  (a) raw ONNX Runtime ``session.run`` on the same graph and thread budget: the ceiling for any server.
  ``--sessions N`` splits the thread budget over N sessions looping side by side in N threads.
  ``mask``: the serving graph on pre-resized images with ``output_size`` = original size (run time only);
  ``logits``: the graph cut at ``logits`` (no upsample/argmax); ``pipeline``: JPEG bytes → PNG in-process
  (decode, resize, run, encode), timed per stage, to attribute what a server adds.
``python -m bench.inproc ov GRAPH --precision bf16 --sessions 1|2 --threads 2 --out R.json [JPEGs]``
  (c) raw OpenVINO on the CPU (``bench.ovcase``): the serving graph's ``mask`` (or ``--output logits``:
  the network alone, as the server compiles it), pre-resized images;
  ``--sessions N``: N streams (one infer request each, side by side) sharing the thread budget.
``python -m bench.inproc hf WEIGHTS_DIR|random:b0 --threads 2 --out R.json [JPEGs]``
  (b) the transformers path a user would write: ``SegformerImageProcessorPil`` + eager model +
  ``post_process_semantic_segmentation`` to the original size, from JPEG bytes.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from bench.common import RunResult, load_images, summarize, write_json
from bench.ortcase import OrtCase


def timed_loop(
    step: Callable[[int], None], duration: float, warmup: int = 2, min_iters: int = 3
) -> list[float]:
    """Call ``step(i)`` ``warmup`` times untimed, then for ``duration`` s (at least ``min_iters`` times)."""
    for i in range(warmup):
        step(i)
    latencies: list[float] = []
    end = time.perf_counter() + duration
    i = 0
    while time.perf_counter() < end or len(latencies) < min_iters:
        start = time.perf_counter()
        step(i)
        latencies.append(time.perf_counter() - start)
        i += 1
    return latencies


def side_by_side(steps: list[Callable[[int], None]], duration: float, warmup: int) -> list[float]:
    """``timed_loop`` of every step at once, one thread each (ORT releases the GIL); all latencies."""
    with ThreadPoolExecutor(len(steps)) as pool:
        runs = list(pool.map(lambda step: timed_loop(step, duration, warmup=warmup), steps))
    return [latency for run in runs for latency in run]


def _hf_step(source: str, images: list[bytes], threads: int) -> Callable[[int], None]:
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessorPil

    torch.set_num_threads(threads)
    if source.startswith("random:"):
        config = SegformerConfig(num_labels=150)  # the defaults are B0
        model = SegformerForSemanticSegmentation(config).eval()
        processor = SegformerImageProcessorPil(size={"height": 512, "width": 512})
    else:
        model = SegformerForSemanticSegmentation.from_pretrained(source).eval()
        processor = SegformerImageProcessorPil.from_pretrained(source)

    def step(i: int) -> None:
        image = Image.open(io.BytesIO(images[i % len(images)])).convert("RGB")
        with torch.inference_mode():
            outputs = model(**processor(images=image, return_tensors="pt"))
            (mask,) = processor.post_process_semantic_segmentation(
                outputs, target_sizes=[(image.height, image.width)]
            )
        mask.numpy()

    return step


def measure(args: argparse.Namespace) -> RunResult:
    images = load_images(args.images)
    if args.kind == "hf":
        step, system, batch = _hf_step(args.source, images, args.threads), "hf-transformers", 1
        stages: dict[str, float] = {}
    elif args.kind == "ov":
        from bench.ovcase import OvCase

        if args.output == "pipeline":
            raise SystemExit("bench.inproc ov: --output mask or logits")
        ov_case = OvCase(
            Path(args.source), args.threads, args.sessions, args.precision, images, args.static, args.output
        )
        system = f"ov-{args.output}-{args.precision}" + ("-static" if args.static else "")
        batch, stages = 1, {}
    else:
        threads = max(1, args.threads // args.sessions)
        cases = [
            OrtCase(Path(args.source), threads, args.output, args.batch, images) for _ in range(args.sessions)
        ]
        step, system, batch, stages = cases[0].step, f"ort-{args.output}", args.batch, cases[0].stages
    wall0, cpu1 = time.perf_counter(), os.times()
    if args.kind == "ov":
        latencies = side_by_side(ov_case.steps, args.duration, args.warmup)
    elif args.kind == "ort" and args.sessions > 1:
        latencies = side_by_side([c.step for c in cases], args.duration, args.warmup)
    else:
        latencies = timed_loop(step, args.duration, warmup=args.warmup)
    wall, cpu2 = time.perf_counter() - wall0, os.times()
    used = (cpu2.user + cpu2.system) - (cpu1.user + cpu1.system)
    return summarize(
        system,
        batch,
        latencies,
        wall,
        images=len(latencies) * batch,
        cpu_cores=used / wall,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        batch=batch,
        extra={"stage_ms": {k: 1000 * v / max(1, len(latencies) + args.warmup) for k, v in stages.items()}},
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("kind", choices=["ort", "ov", "hf"])
    parser.add_argument("source", help="ONNX graph (ort) or weights folder / random:b0 (hf)")
    parser.add_argument("--output", choices=["mask", "logits", "pipeline"], default="mask")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=1, help="ort: sessions, ov: streams side by side")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="bf16", help="ov only")
    parser.add_argument("--static", action="store_true", help="ov only: compile for the inference size")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--system", default=None, help="name to report (default: derived)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("images", nargs="*", type=Path)
    args = parser.parse_intermixed_args(argv)
    result = measure(args)
    if args.system:
        result.system = args.system
    write_json(args.out, result)


if __name__ == "__main__":
    main()
