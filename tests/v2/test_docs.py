"""The tritonclient examples of README.md and docs/v2.md run as written (only address and model change)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.grpc.serving import ROOT, LiveServer, encode, scene
from tests.v2.conftest import MODEL


def _block(doc: Path, needle: str) -> str:
    blocks = [b for b in re.findall(r"```python\n(.*?)```", doc.read_text(), re.DOTALL) if needle in b]
    assert len(blocks) == 1, f"one python block with {needle!r} in {doc}"
    return blocks[0].replace('"segformer-b0-ade20k"', repr(MODEL))


def _run(code: str, cwd: Path) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_readme_http_example_runs(live: LiveServer, tmp_path: Path) -> None:
    code = _block(ROOT / "README.md", "tritonclient.http")
    (tmp_path / "photo.jpg").write_bytes(encode(scene(90, 120, seed=1), "JPEG"))
    (tmp_path / "street.jpg").write_bytes(encode(scene(60, 80, seed=2), "JPEG"))
    lines = _run(code.replace("127.0.0.1:8000", live.rest_url.removeprefix("http://")), tmp_path)
    assert len(lines) == 2 and all(re.fullmatch(r"\d+ bytes of PNG, mostly \S.*", line) for line in lines)


def test_v2_doc_stream_example_runs(live: LiveServer, tmp_path: Path) -> None:
    code = _block(ROOT / "docs" / "v2.md", "async_stream_infer")
    (tmp_path / "frames").mkdir()
    for i in range(20):
        (tmp_path / "frames" / f"{i:03d}.jpg").write_bytes(encode(scene(40, 56, seed=300 + i), "JPEG"))
    (tmp_path / "frames" / "007.jpg").write_bytes(b"not a jpeg")
    lines = _run(code.replace("127.0.0.1:50051", live.grpc_address), tmp_path)
    assert [line.split()[0] for line in lines] == [f"{i:03d}.jpg" for i in range(20)]
    assert "error: not a decodable image" in lines[7] and "(40, 56)" in lines[0]
