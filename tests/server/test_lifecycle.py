"""Start-up (not ready until warm), SIGTERM with requests in flight, exporting on start, no torch."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import onnxruntime as ort
import pytest

from server.settings import Settings
from server.source import resolve_model
from tests.server.live import Served, image_bytes, metric_value


def test_not_ready_until_warm_then_sigterm_loses_nothing(random_b0_onnx: Path, tmp_path: Path) -> None:
    # long warm-up so that "listening but not ready" is observable; gRPC on too (one event loop)
    server = Served(tmp_path, "--model", str(random_b0_onnx), "--warmup-runs", "8", grpc=True)
    try:
        server.wait_listening()
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["error"] == "not_ready"
        assert int(ready.headers["retry-after"]) >= 1
        early = httpx.post(
            f"{server.url}/v1/segment", content=image_bytes(32, 32), headers={"Content-Type": "image/png"}
        )
        assert early.status_code == 503 and early.json()["error"] == "not_ready"
        assert httpx.get(f"{server.url}/v1/model", timeout=10).status_code == 503
        server.wait_ready()

        async def in_flight_then_term() -> list[httpx.Response]:
            bodies = [image_bytes(300, 400, "JPEG", seed=i) for i in range(6)]
            async with httpx.AsyncClient(timeout=120) as client:
                requests = [
                    asyncio.create_task(
                        client.post(
                            f"{server.url}/v1/segment", content=b, headers={"Content-Type": "image/jpeg"}
                        )
                    )
                    for b in bodies
                ]
                # SIGTERM once all six are inside the server
                end = time.monotonic() + 60
                while time.monotonic() < end:
                    text = (await client.get(f"{server.url}/metrics")).text
                    if metric_value(text, "segformer_in_flight_requests", transport="rest") >= 6:
                        break
                    await asyncio.sleep(0.02)
                server.proc.send_signal(signal.SIGTERM)
                return await asyncio.gather(*requests)

        answers = asyncio.run(in_flight_then_term())
        assert [a.status_code for a in answers] == [200] * 6
        assert server.proc.wait(timeout=120) == 0, server.log_tail()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/healthz", timeout=5)
    finally:
        code = server.stop()
    assert code == 0
    assert server.torch_modules() == [], "the server process imported torch"
    assert any("SIGTERM" in line for line in server.log)


def test_exports_a_checkpoint_once_without_torch_in_the_server(tmp_path: Path) -> None:
    args = ("--model", "random:b0", "--export-args=--no-verify", "--mode", "native")
    server = Served(tmp_path, *args)
    try:
        server.wait_ready()
        answer = httpx.post(
            f"{server.url}/v1/segment", content=image_bytes(64, 64), headers={"Content-Type": "image/png"}
        )
        assert answer.status_code == 200, answer.text
    finally:
        assert server.stop() == 0, server.log_tail()
    assert server.torch_modules() == [], "exporting must happen in a subprocess"
    (exported,) = (tmp_path / "cache").glob("*.onnx")
    stamp = exported.stat().st_mtime_ns
    settings = Settings(cache_dir=tmp_path / "cache", export_args="--no-verify")
    assert resolve_model("random:b0", settings) == exported and exported.stat().st_mtime_ns == stamp  # cached


def test_unloadable_model_exits_non_zero(tmp_path: Path) -> None:
    server = Served(tmp_path, "--model", str(tmp_path / "missing.onnx"))
    assert server.proc.wait(timeout=120) == 1
    server.stop()
    assert any("missing.onnx" in line for line in server.log)


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA build")
def test_device_cuda_without_cuda_fails_fast(random_b0_onnx: Path, tmp_path: Path) -> None:
    server = Served(tmp_path, "--model", str(random_b0_onnx), "--device", "cuda")
    assert server.proc.wait(timeout=120) == 2
    server.stop()
    assert server.port is None  # nothing started listening
    assert any("onnxruntime-gpu" in line for line in server.log), server.log_tail()


def test_sigterm_during_export_stops_promptly(tmp_path: Path) -> None:
    server = Served(tmp_path, "--model", "random:b0", "--export-args=--no-verify")
    server.wait_listening()
    start = time.monotonic()
    assert server.stop(timeout=60) == 0, server.log_tail()
    assert time.monotonic() - start < 30
    assert not list((tmp_path / "cache").glob("*.onnx")), "a cancelled export must leave nothing behind"
