"""README.md's commands run as written: its fenced ``curl`` and ``segformer-client`` lines, in order,
against a live server that serves the models they name (``ade``, ``street``) and the admin API.

Only the host and ports are changed (the server listens on free loopback ports). The files the commands
name (``photo.jpg``, ``photo.png``, ``frames/``, ``b0-ade-v2.onnx``) are made in a scratch folder where
both the server and the commands run (a load's ``source`` is a path on the server), the
programs come from this interpreter's ``bin/`` (``.venv/bin``, as the README says), and curl runs with
``--fail-with-body`` from a ``.curlrc`` so that an HTTP error fails the command.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.grpc.serving import free_port
from tests.server.live import Served, image_bytes

ROOT = Path(__file__).resolve().parents[1]
#: the commands this test runs: cheap, and needing nothing but the server and the scratch files
RUNS = ("curl ", "segformer-client ")
#: not these: a video file and a camera stream (tests/client runs the video client on real videos)
SKIPS = ("segformer-client video ",)
TOKEN = "readme-token"


def fenced_commands(text: str) -> list[str]:
    """The shell commands of the README's ``bash`` blocks: continuation lines joined, comments dropped."""
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", "", block)
        for line in joined.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def test_the_readme_has_the_commands_this_test_runs() -> None:
    commands = fenced_commands((ROOT / "README.md").read_text())
    assert "make serve" in " ".join(commands)
    chosen = [c for c in commands if c.startswith(RUNS) and not c.startswith(SKIPS)]
    assert sum(c.startswith("curl ") for c in chosen) >= 10
    assert sum(c.startswith("segformer-client ") for c in chosen) >= 2


@pytest.mark.slow
def test_readme_commands_run_as_written(random_b0_onnx: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "frames").mkdir(parents=True)
    (work / "photo.jpg").write_bytes(image_bytes(240, 320, "JPEG"))
    (work / "photo.png").write_bytes(image_bytes(200, 300, "PNG", seed=1))
    for index in range(3):
        (work / "frames" / f"{index:03d}.jpg").write_bytes(image_bytes(96, 128, "JPEG", seed=index))
    (work / "b0-ade-v2.onnx").symlink_to(random_b0_onnx)
    (work / ".curlrc").write_text("fail-with-body\nsilent\nshow-error\n")
    grpc_port = free_port()
    server = Served(
        tmp_path / "server", "--model", f"ade={random_b0_onnx}", "--model", f"street={random_b0_onnx}",
        "--admin-token", TOKEN, "--grpc-port", str(grpc_port), grpc=True, cwd=work,
    )  # fmt: skip
    ran: list[str] = []
    try:
        server.wait_ready()
        port = server.url.rsplit(":", 1)[1]
        env = {**os.environ, "HOME": str(work), "TOKEN": TOKEN}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
        for command in fenced_commands((ROOT / "README.md").read_text()):
            if not command.startswith(RUNS) or command.startswith(SKIPS):
                continue
            local = re.sub(r"(localhost|127\.0\.0\.1):8000", f"127.0.0.1:{port}", command)
            local = local.replace("127.0.0.1:50051", f"127.0.0.1:{grpc_port}")
            done = subprocess.run(
                ["bash", "-c", local], cwd=work, env=env, capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            ran.append(command)
    finally:
        assert server.stop() == 0, server.log_tail()
    assert any(c.startswith("segformer-client grpc://") for c in ran), ran
    assert (work / "masks").is_dir() and (work / "overlay.png").stat().st_size > 0
    shutil.rmtree(work / "masks")
