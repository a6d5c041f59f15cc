"""``client.pipeline``'s bounded statistics: the summary percentiles from the histogram, the recent ones."""

from __future__ import annotations

import numpy as np
import pytest

from client.pipeline import Latencies, Throughput


def test_latency_percentiles_within_one_percent_and_bounded_memory() -> None:
    values = np.random.default_rng(0).lognormal(mean=-2.0, sigma=0.8, size=20_000)
    stats = Latencies(recent=100)
    for value in values:
        stats.add(float(value))
    for q in (50, 95, 99):
        assert stats.percentile(q) == pytest.approx(np.percentile(values, q), rel=0.011)
    assert stats.percentile(50, recent=True) == pytest.approx(np.percentile(values[-100:], 50))
    assert len(stats.recent) == 100 and stats.counts.size == Latencies.BUCKETS
    assert np.isnan(Latencies().percentile(50))


def test_throughput_counts_frames() -> None:
    meter = Throughput()
    for _ in range(5):
        meter.add()
    assert meter.frames == 5 and meter.fps() > 0 and meter.fps(recent=True) >= 0
