"""The client is a separate program: of ``server/`` it may import only the generated protocol code."""

from __future__ import annotations

import subprocess
import sys

from tests.grpc.serving import ROOT

_CHECK = """
import importlib, sys
importlib.import_module(sys.argv[1])
server = {m for m in sys.modules if m.split('.')[0] == 'server'} - {'server', 'server.grpc'}
bad = {m for m in server if not m.startswith('server.grpc.gen')}
bad |= {'torch', 'onnxruntime', 'openvino', 'fastapi'} & set(sys.modules)
assert not bad, sorted(bad)
"""


def assert_imports_only_the_protocol(module: str) -> None:
    """Import ``module`` in a fresh interpreter: no torch, no runtime, nothing of server/ but its stubs."""
    subprocess.run([sys.executable, "-c", _CHECK, module], cwd=ROOT, check=True, timeout=60)
