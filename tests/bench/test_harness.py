"""Smoke tests of the bench harness (seconds, no server, no exporter): load generator, baselines, report."""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import struct
from pathlib import Path

import pytest

from bench import plots, ratios, report
from bench.clients import triton_request
from bench.common import summarize, synthetic_jpegs
from bench.duel import duel
from bench.inproc import main as inproc_main
from bench.loadgen import run_load
from bench.suite import Plan, drift_note, phase


def test_closed_loop_load_measures_server_and_itself(fake_rest: str) -> None:
    result = run_load("rest", fake_rest, 3, 0.5, 5.0, synthetic_jpegs(2), pid=os.getpid())
    assert result["requests"] > 0 and result["errors"] == 0
    assert result["images_per_s"] > 0 and result["p50_ms"] <= result["p99_ms"]
    assert result["extra"]["warmed_up"] is True
    assert result["cpu_cores"] is not None and result["peak_rss_mb"] > 0
    assert result["client_cpu_cores"] >= 0


def test_failed_requests_are_counted_as_errors(fake_rest: str) -> None:
    result = run_load("triton", fake_rest, 2, 0.3, 5.0, synthetic_jpegs(1), pid=None)
    assert result["errors"] > 0 and result["requests"] == 0
    assert "HTTP 404" in result["extra"]["error_samples"][0]


def test_triton_request_is_kserve_v2_binary() -> None:
    body, headers = triton_request(b"JPEG")
    split = int(headers["Inference-Header-Content-Length"])
    header = json.loads(body[:split])
    assert header["inputs"][0]["datatype"] == "BYTES" and header["inputs"][0]["shape"] == [1, 1]
    assert body[split:] == struct.pack("<I", 4) + b"JPEG"


@pytest.mark.parametrize(
    ("output", "batch", "sessions"),
    [("mask", 1, 1), ("mask", 2, 1), ("mask", 1, 2), ("logits", 1, 1), ("pipeline", 1, 1)],
)
def test_raw_ort_baseline(tiny_graph: Path, tmp_path: Path, output: str, batch: int, sessions: int) -> None:
    out = tmp_path / "r.json"
    args = ["ort", str(tiny_graph), "--output", output, "--batch", str(batch), "--duration", "0.2"]
    inproc_main([*args, "--sessions", str(sessions), "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["system"] == f"ort-{output}" and result["batch"] == batch
    assert result["requests"] >= 3 and result["images_per_s"] > 0 and result["peak_rss_mb"] > 0
    if output == "pipeline":
        assert set(result["extra"]["stage_ms"]) == {"decode", "resize", "run", "encode"}


@pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="the openvino extra is not installed"
)
@pytest.mark.parametrize(
    ("streams", "static", "output"),
    [(1, False, "mask"), (2, False, "mask"), (1, True, "mask"), (1, True, "logits")],
)
def test_raw_openvino_baseline(
    tiny_graph: Path, tmp_path: Path, streams: int, static: bool, output: str
) -> None:
    out = tmp_path / "r.json"
    args = ["ov", str(tiny_graph), "--precision", "fp32", "--sessions", str(streams), "--duration", "0.2"]
    inproc_main([*args, "--output", output, *(["--static"] if static else []), "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["system"] == f"ov-{output}-fp32" + ("-static" if static else "") and result["batch"] == 1
    assert result["requests"] >= 3 * streams and result["images_per_s"] > 0


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="no openvino extra")
def test_openvino_output_size_becomes_a_real_input(tiny_graph: Path) -> None:
    import openvino as ov

    from bench.ovcase import read_graph

    plain = ov.Core().read_model(str(tiny_graph))
    assert [p.get_any_name() for p in plain.inputs] == ["image"]  # OpenVINO froze the initializer-input
    assert [p.get_any_name() for p in read_graph(ov.Core(), tiny_graph).inputs] == ["image", "output_size"]


def _row(system: str, c: int, ips: float, p50: float) -> dict[str, object]:
    row = summarize(system, c, [p50 / 1000] * 5, 5 / ips, cpu_cores=1.0, peak_rss_mb=100.0).__dict__
    return row


def test_ratios_report_and_plots(tmp_path: Path) -> None:
    results = [
        _row("ort-mask", 1, 5.0, 200.0),
        _row("ort-mask-b4", 4, 5.5, 700.0),
        _row("ort-mask-2s", 1, 5.4, 370.0),
        _row("ort-mask-full", 1, 4.0, 250.0),
        _row("hf-transformers", 1, 2.0, 500.0),
        _row("ours-rest", 1, 4.8, 205.0),
        _row("ours-rest", 4, 5.2, 760.0),
        _row("ours-grpc", 4, 5.1, 770.0),
        _row("pytriton", 4, 4.0, 1000.0),
        _row("pytriton-b1", 4, 4.5, 900.0),
    ]
    computed = {r.name: r for r in ratios.compute(results)}
    best = computed["throughput ours / raw ORT (best of batch 1, batch 4, 2 sessions)"]
    assert best.value == pytest.approx(5.2 / 5.5) and best.met is True
    assert computed["throughput ours / HF transformers"].met is True
    assert computed["throughput ours / PyTriton as anchored (peaks)"].value == pytest.approx(1.3)
    assert computed["throughput ours / PyTriton batching off (info)"].value == pytest.approx(5.2 / 4.5)
    assert computed["p50 at c=1: ours − raw ORT (ms)"].value == pytest.approx(5.0)
    assert computed["speed-up top-K / full upsample, raw ORT batch 1"].value == pytest.approx(5.0 / 4.0)
    assert "ours-grpc" in report.console(results, list(computed.values()))
    written = plots.write_all(results, tmp_path)
    assert all(p.stat().st_size > 1000 for p in written)
    text = report.markdown(results, list(computed.values()), {"model": "random:b0"}, written)
    assert "| throughput ours / HF transformers | 2.60× |" in text and "throughput_vs_concurrency.png" in text


def test_openvino_targets() -> None:
    results = [
        _row("ours-rest", 4, 5.0, 760.0),
        _row("ov-mask", 1, 7.0, 140.0),
        _row("ov-mask-2s", 1, 7.5, 260.0),
        _row("ours-ov-rest", 1, 6.9, 145.0),
        _row("ours-ov-rest", 4, 7.2, 540.0),
    ]
    computed = {r.name: r for r in ratios.compute(results)}
    vs_ort = computed["throughput ours-OpenVINO default (fp32) / ours-ORT (peaks)"]
    assert vs_ort.value == pytest.approx(7.2 / 5.0) and vs_ort.met is True
    slower = [*results[:3], _row("ours-ov-rest", 4, 4.5, 540.0)]
    assert {r.name: r for r in ratios.compute(slower)}[vs_ort.name].met is False  # #24: faster than ORT
    vs_raw = computed[
        "throughput ours-OpenVINO bf16 / raw OpenVINO bf16 (best of dynamic 1, 2 streams, static)"
    ]
    assert vs_raw.value is None and vs_raw.detail == "not measured"  # no pure-bf16 server rows
    assert "p50 at c=1: ours-OpenVINO bf16 − raw OpenVINO bf16 (ms)" not in computed
    default_c1 = computed["p50 at c=1 (info): ours-OpenVINO default − raw OpenVINO bf16 (ms)"]
    assert default_c1.value == pytest.approx(5.0)
    # with the pure-bf16 server and the static raw row, those two compare like with like
    results += [
        _row("ov-mask-static", 1, 14.0, 71.0),
        _row("ours-ov-bf16-rest", 1, 12.0, 80.0),
        _row("ours-ov-bf16-rest", 4, 13.0, 300.0),
    ]
    computed = {r.name: r for r in ratios.compute(results)}
    vs_raw = computed[
        "throughput ours-OpenVINO bf16 / raw OpenVINO bf16 (best of dynamic 1, 2 streams, static)"
    ]
    assert vs_raw.value == pytest.approx(13.0 / 14.0) and vs_raw.met is True
    default = computed["throughput ours-OpenVINO default / raw OpenVINO bf16 (info: fp32 vs pure bf16)"]
    assert default.value == pytest.approx(7.2 / 14.0) and default.met is None
    c1 = computed["p50 at c=1: ours-OpenVINO bf16 − raw OpenVINO bf16 (ms)"]
    assert c1.value == pytest.approx(9.0) and c1.met is True
    assert computed[
        "p50 at c=1 (info): ours-OpenVINO default − raw OpenVINO bf16 (ms)"
    ].value == pytest.approx(74.0)
    rss = computed["peak RSS ours-OpenVINO / ours-ORT"]
    assert rss.value == pytest.approx(1.0) and rss.met is True  # _row: 100 MB everywhere


def test_a_failing_phase_is_noted_and_the_run_goes_on(tmp_path: Path) -> None:
    plan = Plan(model="random:b0", hf_source="random:b0", images=[], work=tmp_path)
    with phase(plan, "PyTriton"):
        raise RuntimeError("no ready model")
    plan.results += [_row("ort-mask", 1, 5.0, 200.0), _row("ort-mask-again", 1, 3.0, 330.0)]
    drift_note(plan)
    assert plan.notes[0] == "PyTriton failed: RuntimeError: no ready model"
    assert "(-40%)" in plan.notes[1] and "read the ratios with care" in plan.notes[1]


def test_latency_duel_interleaves_raw_and_served(tiny_graph: Path, fake_rest: str) -> None:
    result = duel(tiny_graph, fake_rest, synthetic_jpegs(2), threads=1, rounds=2, seconds=0.1)
    assert len(result["rounds"]) == 2 and result["raw_p50_ms"] > 0 and result["served_p50_ms"] > 0
    assert result["gap_ms"] == pytest.approx(
        statistics.median(r["served_p50_ms"] - r["raw_p50_ms"] for r in result["rounds"])
    )
