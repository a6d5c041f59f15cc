"""The Python example of docs/client.md runs as written against the live server (only the address changes)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.grpc.serving import ROOT, LiveServer
from tests.grpc.test_docs import _frames, _run

DOC = ROOT / "docs" / "client.md"


def test_client_example_runs(live: LiveServer, tmp_path: Path) -> None:
    code = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)[0]
    assert "SegformerClient" in code
    _frames(tmp_path, 3)
    lines = _run(code.replace("127.0.0.1:50051", live.grpc_address), tmp_path).splitlines()
    assert lines[0].startswith("200 150 [(")
    assert [line.split()[0] for line in lines[1:]] == ["0", "1", "2"]
