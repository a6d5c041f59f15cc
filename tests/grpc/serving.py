"""A real ``segformer-serve`` (``python -m server``: REST + gRPC, the real app wiring) and test images.

The server runs in a subprocess on free loopback ports. From the moment it is spawned a
``grpc.health.v1`` Watch records every status the server reports, so tests can check it said
NOT_SERVING before warm-up and SERVING after. Also: the reference mask straight from the ONNX graph, and
smooth random scenes (so masks vary between frames) and a > 6 MB noisy PNG.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from server import imaging
from tests.server.live import sigterm_and_wait

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 180.0
FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 100),
]


# a small batching window so concurrent traffic visibly batches; 3 warm-up runs so health is seen
# NOT_SERVING first; a queue of 24 (two streams of 8 in flight fit, a burst of 100 calls does not)
SERVER_ARGS = (
    "--warmup-runs", "3", "--max-queue-delay-ms", "10", "--max-batch-size", "8", "--max-queue-size", "24",
    "--log-level", "warning",
)  # fmt: skip
_shared: LiveServer | None = None


def shared_server(model: Path, workdir: Path) -> LiveServer:
    """One server per test session for tests/grpc and tests/client (started on first use)."""
    global _shared
    if _shared is None:
        _shared = LiveServer(model, workdir, *SERVER_ARGS).wait_ready()
    return _shared


def stop_shared_server() -> None:
    global _shared
    if _shared is not None:
        _shared.stop()
        _shared = None


def stop_after_last_user(item: pytest.Item) -> None:
    """Stop the shared server right after the session's last test that uses it (not at session end)."""
    items = item.session.items
    last = max((i for i, it in enumerate(items) if "live" in getattr(it, "fixturenames", ())), default=-1)
    if items.index(item) >= last:
        stop_shared_server()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """``python -m server`` on free ports; ``health_history`` holds the statuses seen since spawn."""

    def __init__(self, model: Path, workdir: Path, *args: str) -> None:
        self.rest_port, self.grpc_port = free_port(), free_port()
        self.rest_url = f"http://127.0.0.1:{self.rest_port}"
        self.grpc_address = f"127.0.0.1:{self.grpc_port}"
        self.health_history: list[str] = []
        self.log_path = workdir / f"server-{self.grpc_port}.log"
        command = [
            sys.executable, "-m", "server", "--model", str(model), "--host", "127.0.0.1",
            "--port", str(self.rest_port), "--grpc-port", str(self.grpc_port),
            "--cache-dir", str(workdir / "cache"), *args,
        ]  # fmt: skip
        self._log = self.log_path.open("wb")
        # ONNX Runtime unless the test asks (as tests/server/live.py): `auto` picks OpenVINO on a bf16 CPU
        env = {"SEGFORMER_RUNTIME": "onnxruntime", **os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("SEGFORMER_MODEL", None)  # the Makefile exports the default hub id; tests name their models
        self.proc = subprocess.Popen(command, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self._channel = grpc.insecure_channel(self.grpc_address, options=FAST_RECONNECT)
        self._watch = health_pb2_grpc.HealthStub(self._channel).Watch(
            health_pb2.HealthCheckRequest(service=""), wait_for_ready=True
        )
        self._watcher = threading.Thread(target=self._follow_health, daemon=True)
        self._watcher.start()

    def _follow_health(self) -> None:
        with contextlib.suppress(grpc.RpcError):
            for answer in self._watch:
                self.health_history.append(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))

    def wait_ready(self) -> LiveServer:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.health_history[-1:] == ["SERVING"]:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{self.rest_url}/readyz", timeout=2).status_code == 200:
                        return self
            time.sleep(0.05)
        raise RuntimeError(f"server not ready after {STARTUP_TIMEOUT_S} s:\n{self.log_tail()}")

    def client_url(self, transport: str) -> str:
        """The URL ``segformer-client`` takes for ``transport`` (rest or grpc)."""
        return self.rest_url if transport == "rest" else f"grpc://{self.grpc_address}"

    def log_tail(self, lines: int = 40) -> str:
        if not self._log.closed:
            self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def metrics(self) -> str:
        return httpx.get(f"{self.rest_url}/metrics", timeout=10).text

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM (the health Watch keeps recording); the exit status."""
        return sigterm_and_wait(self.proc, timeout)

    def stop(self) -> int:
        self._watch.cancel()
        self.terminate()
        self._watcher.join(timeout=5)
        self._channel.close()
        self._log.close()
        return self.proc.returncode


class GraphReference:
    """The mask the served graph itself gives (server-side preprocessing reproduced, one image a run)."""

    def __init__(self, model: Path) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        raw = self.session.get_modelmeta().custom_metadata_map
        height, width = json.loads(raw.get("segformer.inference_size", "[512, 512]"))
        self.inference_size = (int(height), int(width))

    def mask(self, data: bytes, mode: str = "resize", native_max_side: int = 1024) -> np.ndarray:
        image = imaging.decode_image(data, 40_000_000, 16384)
        height, width = image.shape[:2]
        size = (
            self.inference_size if mode == "resize" else imaging.native_size(height, width, native_max_side)
        )
        resized = imaging.resize_bilinear(image, size)
        feeds = {"image": resized[None], "output_size": np.array([height, width], dtype=np.int64)}
        return self.session.run(["mask"], feeds)[0][0]


def scene(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random RGB image [H, W, 3] uint8 (a few colour blobs, bilinearly blended)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR))


def encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def scene_png(height: int, width: int, seed: int) -> bytes:
    return encode(scene(height, width, seed))


def noisy_png(min_bytes: int, seed: int = 0) -> bytes:
    """An RGB PNG of uniform noise (incompressible) of at least ``min_bytes`` bytes."""
    side = int((min_bytes / 3) ** 0.5) + 16
    noise = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    data = encode(noise)
    assert len(data) >= min_bytes
    return data


def decode_mask(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image)


def sigterm_mid_stream(
    model: Path,
    workdir: Path,
    open_stream: Callable[[grpc.Channel, Iterator[Any]], Iterator[Any]],
    request: Callable[[int], Any],
    answered: Callable[[Any], int],
) -> None:
    """SIGTERM with a stream open (v1 ``StreamSegment``, v2 ``ModelStreamInfer``): the server stops
    taking requests, answers every one it took in order, ends the call with UNAVAILABLE
    (``shutting_down``, "resend") at once, not after its grace period, and exits 0. The client sends
    ``request(i)`` for i = 0, 1, ... until the call ends; ``answered`` checks one response and returns
    the index of the request it answers."""
    server = LiveServer(
        model, workdir, "--sessions", "1", "--intra-op-threads", "1", "--graceful-timeout-s", "60",
        "--log-level", "warning",
    )  # fmt: skip
    stop, sent, indices = threading.Event(), [], []

    def endless() -> Iterator[Any]:
        index = 0
        while not stop.is_set():
            sent.append(index)
            yield request(index)
            index += 1
            time.sleep(0.01)

    try:
        server.wait_ready()
        with grpc.insecure_channel(server.grpc_address) as channel:
            start = None
            try:
                for response in open_stream(channel, endless()):
                    indices.append(answered(response))
                    if len(indices) == 10:
                        start = time.monotonic()
                        server.proc.send_signal(signal.SIGTERM)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                assert ("segformer-error", "shutting_down") in exc.trailing_metadata()
                assert "resend" in exc.details()
            else:
                raise AssertionError("the stream ended without a status")
            finally:
                stop.set()
            assert start is not None and time.monotonic() - start < 10, "ended at once, not after the grace"
        assert indices == list(range(len(indices))) and len(indices) >= 10
        assert len(sent) > len(indices)  # the client kept sending: those requests were never taken
        assert server.proc.wait(timeout=30) == 0
    finally:
        stop.set()
        server.stop()
