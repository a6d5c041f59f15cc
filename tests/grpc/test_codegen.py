"""The committed generated code in ``server/grpc/gen/`` is exactly what ``scripts/gen_proto.py`` makes now.

CI runs this through ``make test``: editing ``proto/`` without regenerating (or hand-editing the
generated files) fails here. The generated code must also import inside the ``server.grpc.gen`` package.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GEN = ROOT / "server" / "grpc" / "gen"


def _load_script():
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_proto"] = module
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the dev extra) regenerates the stubs")
    gen_proto = _load_script()
    gen_proto.generate(tmp_path / "gen")
    stale = gen_proto.differences(tmp_path / "gen", GEN)
    assert not stale, f"server/grpc/gen/ is stale ({stale}): run `python scripts/gen_proto.py` and commit"
    assert (tmp_path / "gen" / "__init__.py").read_bytes() == (GEN / "__init__.py").read_bytes()


def test_generated_code_imports_as_a_package() -> None:
    from server.grpc.gen import segmentation_pb2, segmentation_pb2_grpc

    service = segmentation_pb2.DESCRIPTOR.services_by_name["SegmentationService"]
    assert service.full_name == "segformer.v1.SegmentationService"
    assert segmentation_pb2.DESCRIPTOR.name == "segformer/v1/segmentation.proto"
    assert {m.name for m in service.methods} == {"Segment", "StreamSegment", "GetModel"}
    assert hasattr(segmentation_pb2_grpc, "SegmentationServiceStub")
