"""The GPU bench (``bench/gpu.py``) prepared here and dry-run on the CPU, so it cannot rot between the
sessions that are lent a GPU: every phase must run end to end and give well-formed results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from bench.gpu import main as gpu_main
from bench.gpu_data import STRIPPED, materialize, prepare, skeletonize
from bench.gpu_phases import PHASES
from bench.gpu_report import targets_table


def test_skeleton_keeps_shapes_and_statistics_and_runs_once_refilled(
    tiny_graph: Path, tmp_path: Path
) -> None:
    skeleton = skeletonize(tiny_graph, tmp_path / "tiny.skel.onnx", min_bytes=256)
    emptied = {t.name: t for t in onnx.load(str(skeleton)).graph.initializer}
    assert not emptied["w"].raw_data and emptied["w"].doc_string.startswith(STRIPPED)
    assert numpy_helper.to_array(emptied["output_size"]).tolist() == [0, 0]  # int64, small: kept
    original = numpy_helper.to_array(
        next(t for t in onnx.load(str(tiny_graph)).graph.initializer if t.name == "w")
    )
    full = materialize(skeleton, tmp_path / "tiny.onnx")
    refilled = numpy_helper.to_array(next(t for t in onnx.load(str(full)).graph.initializer if t.name == "w"))
    assert refilled.shape == original.shape and refilled.dtype == original.dtype
    assert abs(refilled.std() - original.std()) < 0.3 * original.std()
    session = ort.InferenceSession(str(full), providers=["CPUExecutionProvider"])
    feed = {"image": np.zeros((1, 64, 64, 3), np.uint8), "output_size": np.array([64, 64], np.int64)}
    (mask,) = session.run(["mask"], feed)
    assert mask.shape == (1, 64, 64)


@pytest.fixture(scope="module")
def dry_data(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``scripts/gpu_prepare.sh`` carries, at 128² and with B0 standing in for B5 (speed)."""
    out = tmp_path_factory.mktemp("gpu") / "data"
    prepare(shared_dir, out, b5_source="", inference_size="128x128")
    return out


@pytest.mark.slow
@pytest.mark.real_weights
@pytest.mark.timeout(300)
def test_dry_run_runs_every_phase_end_to_end(
    dry_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert (
        gpu_main(["--dry-run", "--data", str(dry_data), "--out", str(out), "--work", str(tmp_path / "w")])
        == 0
    )
    results = json.loads((out / "gpu-results.json").read_text())
    assert {name: r["status"] for name, r in results["phases"].items()} == {name: "ok" for name, _ in PHASES}
    assert results["env"]["device"] == "cpu" and not results["env"]["missing_imports"]

    raw = [row for rows in (*results["raw_b0"].values(), *results["b5_raw"].values()) for row in rows]
    assert {r["mode"] for r in raw} == {"numpy", "iobinding", "cudagraph"}
    assert all(r["images_per_s"] > 0 for r in raw if r["mode"] != "cudagraph")
    assert all("CUDA EP" in r["error"] for r in raw if r["mode"] == "cudagraph")

    assert results["served_fp32"]["agreement_vs_cpu"]["min"] >= 0.999  # the same graph on the same EP
    assert results["served_fp16"]["agreement_vs_cpu"]["min"] >= 0.99
    assert results["served_fp16"]["info"]["providers"] == ["CPUExecutionProvider"]
    loads = [r for key in ("served_fp16", "served_fp32", "b5_served") for r in results[key]["loads"]]
    loads += results["tune"]
    assert {(r["target"], r.get("images", "one")) for r in loads} >= {
        ("grpc-stream", "one"),
        ("grpc-stream", "mixed"),
        ("rest", "one"),
        ("rest", "mixed"),
    }
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in loads), loads

    assert [m["arena"] for m in results["memory"]] == ["kSameAsRequested", "kNextPowerOfTwo"]
    assert [f["algo"] for f in results["first_runs"]] == ["HEURISTIC", "EXHAUSTIVE"]
    assert all(len(f["shapes"]) == 5 for f in results["first_runs"])

    report = (out / "gpu-report.md").read_text()
    assert "DRY RUN" in report and "## Targets" in report
    assert capsys.readouterr().out.rstrip().endswith(targets_table(results).rstrip())
    assert "n/a (dry run)" in targets_table(results)  # a dry run never claims a target
