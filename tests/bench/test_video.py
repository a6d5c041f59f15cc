"""``bench.video`` end to end at a tiny size (a real server, the random B0); its rows reach the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import report, video

pytestmark = pytest.mark.slow


def test_video_phase_measures_streams_and_rest_and_reports_them(random_b0_onnx: Path, tmp_path: Path) -> None:
    result = video.run(random_b0_onnx, [], tmp_path, threads=2, count=4)
    systems = [(r["system"], r["clients"], r["frames"]) for r in result["rows"]]
    assert systems == [
        ("grpc-stream x1", 1, 4),
        ("rest one-by-one x1", 1, 4),
        ("grpc-stream x4", 4, 4),
        ("rest one-by-one x4", 4, 4),
    ]
    assert all(r["fps"] > 0 and 0 < r["p50_ms"] <= r["p95_ms"] for r in result["rows"])
    assert (tmp_path / "raw" / "video.json").exists()
    section = "\n".join(report.video_section(result))
    assert "## Video frames (1920×1080)" in section and "| grpc-stream x4 | 4 |" in section
