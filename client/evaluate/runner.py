"""Evaluate a served model on a labelled folder: stream the images, compare each mask with its annotation.

The images go through ``SegformerClient.stream`` (REST: ``concurrency`` requests in flight; gRPC: one
``StreamSegment`` call, bounded by the server's ``--stream-max-inflight``), in order; each answer is
compared with its annotation as it arrives, and only the per-class counts are kept.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from client.client import SegformerClient
from client.evaluate.dataset import Pair, read_label
from client.evaluate.labels import LabelError, LabelMapping
from client.evaluate.metrics import IoUAccumulator, Metrics


class EvalError(RuntimeError):
    """The evaluation cannot go on (a refused image, a size mismatch, a model/dataset mismatch)."""


@dataclass
class Progress:
    """``evaluated 12/500 (2%) 3.1 img/s, ETA 2m38s`` on stderr: one updating line on a terminal, else
    a line every 5 %."""

    total: int
    out: TextIO = field(default_factory=lambda: sys.stderr)
    enabled: bool = True
    done: int = 0
    start: float = field(default_factory=time.perf_counter)

    def update(self) -> None:
        self.done += 1
        if not self.enabled:
            return
        tty = self.out.isatty()
        step = max(1, self.total // 20)
        if tty or self.done % step == 0 or self.done == self.total:
            elapsed = max(time.perf_counter() - self.start, 1e-9)
            rate = self.done / elapsed
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            line = (
                f"evaluated {self.done}/{self.total} ({100 * self.done // self.total}%) "
                f"{rate:.1f} img/s, ETA {int(eta // 60)}m{int(eta % 60):02d}s"
            )
            self.out.write(f"\r{line}" if tty else f"{line}\n")
            if tty and self.done == self.total:
                self.out.write("\n")
            self.out.flush()


@dataclass
class Evaluation:
    """One run: the metrics, the counts, and what was evaluated."""

    accumulator: IoUAccumulator
    metrics: Metrics
    class_names: list[str]
    seconds: float
    info: dict[str, Any]


def num_classes_of(description: dict[str, Any], mapping: LabelMapping) -> int:
    """The class count: the dataset's, which must be the model's (custom: the model's)."""
    served = int(description["num_labels"])
    if mapping.num_classes is not None and mapping.num_classes != served:
        raise EvalError(
            f"the model {description.get('name', '?')!r} has {served} classes, "
            f"{mapping.dataset} has {mapping.num_classes}: pick the matching --dataset (or custom)"
        )
    return served


def true_precision(description: dict[str, Any]) -> str | None:
    """What the runtime computes in, as the server reports it (``inference_precision``: OpenVINO's
    ``mixed``/``bf16``...), else the graph's own ``precision`` (a server that does not report it)."""
    value = description.get("inference_precision") or description.get("precision")
    return None if value is None else str(value)


def class_names(description: dict[str, Any], num_classes: int) -> list[str]:
    names = {int(c["id"]): str(c["label"]) for c in description.get("classes", [])}
    return [names.get(i, f"class_{i}") for i in range(num_classes)]


def evaluate(
    client: SegformerClient,
    pairs: list[Pair],
    description: dict[str, Any],
    *,
    mode: str | None = None,
    model: str | None = None,
    concurrency: int = 4,
    progress: bool = True,
) -> Evaluation:
    """Segment every pair's image through ``client`` and score it against its annotation."""
    num_classes = num_classes_of(description, pairs[0].mapping)
    accumulator = IoUAccumulator(num_classes)
    bar = Progress(len(pairs), enabled=progress)
    mask_format = "raw" if client.transport == "grpc" else "png"
    results = client.stream(
        (p.image for p in pairs), mode=mode, model=model, inflight=concurrency, mask_format=mask_format
    )
    start = time.perf_counter()
    for pair, seg in zip(pairs, results, strict=True):
        if seg.error is not None:
            raise EvalError(f"{pair.image}: the server refused it: {seg.error}")
        pred = seg.mask()
        label = read_label(pair)
        if pred.shape != label.shape:
            raise LabelError(
                f"label {pair.label} is {label.shape[1]}x{label.shape[0]} but image {pair.image} is "
                f"{pred.shape[1]}x{pred.shape[0]} (width x height): they must be the same size"
            )
        accumulator.add(pred, label)
        bar.update()
    seconds = time.perf_counter() - start
    metrics = accumulator.metrics()
    info = {
        "model": description.get("name"),
        "precision": true_precision(description),
        "graph_precision": description.get("precision"),
        "runtime": description.get("runtime"),
        "mode": mode or description.get("mode"),
        "dataset": pairs[0].mapping.dataset,
        "labels": sorted({p.mapping.describe() for p in pairs}),
        "transport": client.transport,
        "url": client.url,
        "images": accumulator.images,
        "seconds": seconds,
        "images_per_second": accumulator.images / seconds if seconds > 0 else math.nan,
    }
    return Evaluation(accumulator, metrics, class_names(description, num_classes), seconds, info)
