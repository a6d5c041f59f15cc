"""``segformer-export``: SegFormer checkpoint -> verified ONNX serving graph (docs/export.md).

``contract.graph``, ``contract.upsample``, ``export.fp16`` and ``contract.metadata`` need only ``onnx``; the
names below import torch, so they are loaded on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RuntimeCannotRun", "VerificationError", "export_model", "export_onnx", "read_metadata"]

_WHERE = {
    "export_onnx": "export.api",
    "export_model": "export.api",
    "VerificationError": "export.verify",
    "RuntimeCannotRun": "export.verify",
    "read_metadata": "contract.metadata",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'export' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_WHERE[name]), name)
