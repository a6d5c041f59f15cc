"""One replica = one ``segformer-serve`` process (a pod), on its own loopback REST and gRPC ports."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.grpc.serving import free_port
from tests.server.live import ROOT, metric_value

STREAM = "/segformer.v1.SegmentationService/StreamSegment"

# two replicas share 2 cores: one session of one thread each
SERVER_ARGS = (
    "--sessions", "1", "--intra-op-threads", "1", "--warmup-runs", "1", "--max-batch-size", "4",
    "--log-level", "warning",
)  # fmt: skip


class Replica:
    def __init__(self, name: str, model: Path, workdir: Path, graceful_timeout_s: float) -> None:
        self.name = name
        self.rest_port, self.grpc_port = free_port(), free_port()
        self.log_path = workdir / f"replica-{name}.log"
        self._log = self.log_path.open("wb")
        command = [
            sys.executable, "-m", "server", "--model", str(model), "--host", "127.0.0.1",
            "--port", str(self.rest_port), "--grpc-port", str(self.grpc_port),
            "--cache-dir", str(workdir / "cache"), "--graceful-timeout-s", str(graceful_timeout_s),
            *SERVER_ARGS,
        ]  # fmt: skip
        self.started = time.monotonic()
        self.proc = subprocess.Popen(command, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        self.slot: str | None = None
        self.frames = 0  # stream frames it answered, read before it stops

    def frames_answered(self) -> int:
        """StreamSegment frames this replica answered (its own metrics)."""
        text = httpx.get(f"http://127.0.0.1:{self.rest_port}/metrics", timeout=10).text
        return int(metric_value(text, "segformer_requests_total", endpoint=STREAM, status="200"))

    def in_flight(self) -> dict[str, int]:
        """Requests inside its data plane right now, by transport."""
        text = httpx.get(f"http://127.0.0.1:{self.rest_port}/metrics", timeout=10).text
        return {
            t: int(metric_value(text, "segformer_in_flight_requests", transport=t)) for t in ("rest", "grpc")
        }

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"replica {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def sigterm(self) -> float:
        """SIGTERM (what the kubelet sends after preStop) and wait; seconds until it exited."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)
        self._log.close()
        return time.monotonic() - start

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self._log.closed:
            self._log.close()

    def log_tail(self, lines: int = 30) -> str:
        if not self._log.closed:
            self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
