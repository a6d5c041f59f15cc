"""The Python examples of docs/grpc.md run as written against the live server (only the address changes)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.grpc.serving import ROOT, LiveServer, encode, scene

DOC = ROOT / "docs" / "grpc.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)


def _run(code: str, cwd: Path) -> str:
    env_path = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120, env=env_path
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _frames(folder: Path, count: int) -> None:
    (folder / "frames").mkdir()
    for i in range(count):
        (folder / "frames" / f"{i:04d}.jpg").write_bytes(encode(scene(90, 120, seed=900 + i), "JPEG"))
    (folder / "street.jpg").write_bytes(encode(scene(150, 200, seed=999), "JPEG"))


def test_streaming_example_runs(live: LiveServer, tmp_path: Path) -> None:
    code = _python_blocks()[0]
    assert 'ADDRESS = "127.0.0.1:50051"' in code and "StreamSegment" in code
    _frames(tmp_path, 5)
    (tmp_path / "frames" / "0002.jpg").write_bytes(b"a broken frame")
    lines = _run(code.replace("127.0.0.1:50051", live.grpc_address), tmp_path).splitlines()
    assert lines[0] == "segformer-b0-random"
    assert [line.split(":")[0] for line in lines[1:]] == [f"{i:04d}.jpg" for i in range(5)]
    assert "corrupt_image" in lines[3] and "120x90, mostly" in lines[1]
