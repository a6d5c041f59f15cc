"""A private ``segformer-serve`` for a model path (``segformer-eval model.onnx ...``).

"In-process" evaluation is a real server in a subprocess on free ``127.0.0.1`` ports, so the numbers
are those of the served path (decode, preprocessing, batcher, ONNX Runtime, encoding) and this process
still imports neither torch nor onnxruntime. ``--serve-arg`` values are passed to it after ours.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalServer:
    """``python -m server --model MODEL`` on loopback; a context manager (SIGTERM on exit)."""

    def __init__(
        self,
        model: str,
        serve_args: Sequence[str] = (),
        *,
        grpc: bool = False,
        startup_timeout: float = 600.0,
    ) -> None:
        self.rest_port = free_port()
        self.grpc_port = free_port() if grpc else 0
        self.url = f"grpc://127.0.0.1:{self.grpc_port}" if grpc else f"http://127.0.0.1:{self.rest_port}"
        self._readyz = f"http://127.0.0.1:{self.rest_port}/readyz"
        self.command = [
            sys.executable, "-m", "server", "--model", model, "--host", "127.0.0.1",
            "--port", str(self.rest_port), "--grpc-port", str(self.grpc_port), "--log-level", "warning",
            *serve_args,
        ]  # fmt: skip
        self.startup_timeout = startup_timeout
        self._log = tempfile.NamedTemporaryFile(prefix="segformer-eval-server-", suffix=".log", delete=False)  # noqa: SIM115
        self.log_path = Path(self._log.name)
        self.proc: subprocess.Popen[bytes] | None = None

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def start(self) -> LocalServer:
        self.proc = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready(self.proc)
        except BaseException:  # not ready, or interrupted: no server left behind
            self.stop()
            raise
        return self

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the local server exited with {proc.returncode} ({self.log_path}):\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self._readyz, timeout=5).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(
            f"the local server was not ready after {self.startup_timeout:.0f} s ({self.log_path})"
        )

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if exc[0] is None:
            self.log_path.unlink(missing_ok=True)
