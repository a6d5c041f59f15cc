"""The live progress line (tqdm) and the summary: frames, fps, p50/p95 latency, skipped, failed."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from tqdm import tqdm

from client.pipeline import Latencies, Throughput

REFRESH_S = 0.25


class Progress:
    """Count answered frames; ``skipped`` reads the live source's count of dropped frames."""

    def __init__(self, total: int | None, enabled: bool, skipped: Callable[[], int] = lambda: 0) -> None:
        self.latencies, self.throughput, self.skipped = Latencies(), Throughput(), skipped
        self.failed = 0
        self._shown = 0.0
        self._bar = tqdm(
            total=total or None, unit="frame", disable=not enabled, file=sys.stderr, dynamic_ncols=True
        )

    def add(self, latency_s: float, ok: bool) -> None:
        self.latencies.add(latency_s)
        self.throughput.add()
        self.failed += 0 if ok else 1
        now = time.perf_counter()
        if now - self._shown >= REFRESH_S:
            self._shown = now
            self._bar.set_postfix_str(self._numbers(recent=True), refresh=False)
        self._bar.update(1)

    def _numbers(self, recent: bool) -> str:
        p50, p95 = (1000 * self.latencies.percentile(q, recent=recent) for q in (50, 95))
        failed = f", {self.failed} failed" if self.failed else ""
        return (
            f"{self.throughput.fps(recent=recent):.1f} fps, p50 {p50:.0f} ms, p95 {p95:.0f} ms, "
            f"{self.skipped()} skipped{failed}"
        )

    def summary(self) -> str:
        seconds = time.perf_counter() - self.throughput.start
        return f"{self.throughput.frames} frames in {seconds:.1f} s: {self._numbers(recent=False)}"

    def close(self) -> None:
        self._bar.close()
