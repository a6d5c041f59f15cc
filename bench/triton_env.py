"""The PyTriton baseline's own virtual environment, and starting/stopping its server.

PyTriton pins numpy < 2 and downgrades protobuf, so it never goes into the project's venv: it lives in
``.cache/pytriton-venv`` (gitignored), created on first use with the pinned packages.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.common import free_port, stop_session, wait_ready

PACKAGES = ["nvidia-pytriton==0.7.0", "tritonclient[http,grpc]", "onnxruntime", "pillow"]
SCRIPT = Path(__file__).with_name("triton_model.py")
# PyTriton restricts Triton's statistics API (which perf_analyzer reads) to a token; the bench sets it
ACCESS_TOKEN = "segformer-bench"
ACCESS_HEADER = f"triton-access-token:{ACCESS_TOKEN}"


def ensure_venv(venv: Path, python: str | None = None) -> Path:
    """Create ``venv`` with PyTriton unless it is already there; its python executable."""
    exe = venv / "bin" / "python"
    if exe.exists() and (venv / ".installed").exists():
        return exe
    base = python or _base_python()
    print(f"[bench] creating the PyTriton venv in {venv} (one-off, ~1 min)", flush=True)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(exe), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    (venv / ".installed").touch()
    return exe


def _base_python() -> str:
    """The interpreter our venv was made from (PyTriton needs a CPython 3.8–3.12 with a shared libpython)."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


@dataclass
class TritonServer:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        stop_session(self.process, grace_s=30)  # Triton and its Python-backend stubs


def start_triton(
    python: Path, onnx: Path, workdir: Path, threads: int, max_batch: int, delay_us: int
) -> TritonServer:
    """Start the PyTriton server on free loopback ports and wait until the model is ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    http_port = free_port()
    log = workdir / "triton.log"
    cmd = [str(python), str(SCRIPT), str(onnx), "--http-port", str(http_port)]
    cmd += ["--grpc-port", str(free_port()), "--metrics-port", str(free_port()), "--threads", str(threads)]
    cmd += ["--max-batch", str(max_batch), "--delay-us", str(delay_us), "--workspace", str(workdir / "ws")]
    cmd += ["--access-token", ACCESS_TOKEN]
    with log.open("wb") as sink:
        process = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    server = TritonServer(process, f"http://127.0.0.1:{http_port}", log)
    if wait_ready(process, f"{server.url}/v2/models/segformer/ready", "PyTriton", log, poll_s=0.5):
        return server
    server.stop()
    raise RuntimeError(f"PyTriton not ready after 180 s; see {log}")
