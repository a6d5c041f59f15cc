"""``bench.ovsoak`` end to end at a tiny size (real servers on both runtimes, the random B0)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import ovsoak

pytestmark = pytest.mark.slow
pytest.importorskip("openvino", reason="the openvino extra is not installed")


def test_ovsoak_measures_both_runtimes_and_many_shapes(random_b0_onnx: Path, tmp_path: Path) -> None:
    result = ovsoak.run(random_b0_onnx, [], tmp_path, threads=2, requests=16, shapes=4)
    soak = result["batching_soak"]
    assert set(soak) == {"onnxruntime", "openvino"}
    for row in soak.values():
        assert row["errors"] == 0 and row["requests"] == 16 and 1 <= row["mean_batch"] <= 8
        assert 0 < row["rss_20pct_mb"] <= row["rss_peak_mb"]
        assert len(row["fifth_peaks_mb"]) == 5 and max(row["fifth_peaks_mb"]) == row["rss_peak_mb"]
        assert row["rss_growth"] >= 0
    native = result["native_shapes"]
    assert native["shapes"] == 4 and native["errors"] == 0 and native["peak_over_100"] >= 1
    assert (tmp_path / "raw" / "ovsoak.json").exists()
