"""A real ``segformer-serve`` in a subprocess (uvicorn on a free loopback port) for the REST tests.

The process is started through a tiny launcher that, at exit, writes which ``torch`` modules were
imported, so every test server also checks that the server never imports torch.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 240.0
_LAUNCHER = """
import atexit, sys
marker = sys.argv[1]
def _dump():
    with open(marker, "w") as out:
        out.write("\\n".join(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))))
atexit.register(_dump)
from server.__main__ import main
sys.exit(main(sys.argv[2:]))
"""


class Served:
    """``segformer-serve`` on ``127.0.0.1`` with a port chosen by the OS (read back from uvicorn's log)."""

    def __init__(self, workdir: Path, *args: str, grpc: bool = False, cwd: Path = ROOT) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.marker = workdir / f"torch-modules-{time.time_ns()}.txt"
        self.log: list[str] = []
        self.port: int | None = None
        command = [sys.executable, "-c", _LAUNCHER, str(self.marker), "--host", "127.0.0.1", "--port", "0"]
        if not grpc:
            command += ["--grpc-port", "0"]
        command += ["--cache-dir", str(workdir / "cache"), *args]
        # ONNX Runtime unless the test asks (``--runtime`` wins): `auto` picks OpenVINO on an AVX-512 CPU
        env = {"SEGFORMER_RUNTIME": "onnxruntime", **os.environ, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env.pop("SEGFORMER_MODEL", None)  # the Makefile exports the default hub id; tests name their models
        self.proc = subprocess.Popen(
            command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line.rstrip("\n"))
            match = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
            if match:
                self.port = int(match.group(1))

    @property
    def url(self) -> str:
        assert self.port is not None, "server not listening yet"
        return f"http://127.0.0.1:{self.port}"

    def _alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")

    def wait_listening(self, timeout: float = STARTUP_TIMEOUT_S) -> Served:
        end = time.monotonic() + timeout
        while self.port is None:
            self._alive()
            if time.monotonic() > end:
                raise RuntimeError(f"server not listening after {timeout} s:\n{self.log_tail()}")
            time.sleep(0.02)
        return self

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT_S) -> Served:
        self.wait_listening(timeout)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self._alive()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log[-lines:])

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=30).text

    def stop(self, timeout: float = 120) -> int:
        """SIGTERM and wait; the exit status."""
        sigterm_and_wait(self.proc, timeout)
        self._reader.join(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return self.proc.returncode

    def torch_modules(self) -> list[str]:
        """The torch modules the server process had imported (valid after a clean exit)."""
        return [m for m in self.marker.read_text().splitlines() if m]


def sigterm_and_wait(proc: subprocess.Popen[Any], timeout: float) -> int:
    """SIGTERM a server process, wait up to ``timeout`` s (then kill it); its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when absent)."""
    total = 0.0
    for match in re.finditer(rf"^{re.escape(name)}(?:\{{(.*?)\}})? (\S+)$", text, re.MULTILINE):
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def batches_over_one(text: str) -> float:
    """Batches with more than one request, from the ``segformer_batch_size`` histogram."""
    count = metric_value(text, "segformer_batch_size_count")
    return count - metric_value(text, "segformer_batch_size_bucket", le="1.0")


def image_bytes(height: int, width: int, fmt: str = "PNG", seed: int = 0, **save: object) -> bytes:
    """A smooth random RGB image (blobs, so that masks have structure) encoded as ``fmt``."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def png_mask(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)
