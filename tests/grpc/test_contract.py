"""Wire contract: fresh generated code, the ServeError → gRPC code table, deadlines, raw masks.

The committed generated code in ``server/grpc/gen/`` is exactly what ``scripts/gen_proto.py`` makes now.

CI runs this through ``make test``: editing ``proto/`` without regenerating (or hand-editing the
generated files) fails here. The generated code must also import inside the ``server.grpc.gen`` package.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from server import errors
from server.errors import ServeError
from server.grpc import convert
from server.grpc.gen import segmentation_pb2 as pb
from server.outputs.base import options
from tests.server.outputs.synthetic import with_mask

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
    assert {m.name for m in service.methods} == {"Segment", "StreamSegment", "GetModel", "ListModels"}
    assert hasattr(segmentation_pb2_grpc, "SegmentationServiceStub")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.corrupt_image("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.image_too_large("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.invalid_argument("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.unsupported_media_type("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.body_too_large(1), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.queue_full(2.0), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.not_ready(), grpc.StatusCode.UNAVAILABLE),
        (errors.shutting_down(), grpc.StatusCode.UNAVAILABLE),
        (errors.deadline_exceeded(), grpc.StatusCode.DEADLINE_EXCEEDED),
        (errors.internal("x"), grpc.StatusCode.INTERNAL),
        (ServeError(418, "teapot", "x"), grpc.StatusCode.INVALID_ARGUMENT),
        (ServeError(502, "bad_gateway", "x"), grpc.StatusCode.INTERNAL),
    ],
)
def test_one_table_maps_serve_errors_to_grpc_codes(error: ServeError, code: grpc.StatusCode) -> None:
    assert convert.grpc_code(error) == code
    frame = convert.frame_error(5, error)
    assert (frame.frame_id, frame.status.code, frame.status.error) == (5, code.value[0], error.error)
    trailers = dict(convert.error_trailers(error))
    assert trailers["segformer-error"] == error.error
    assert ("retry-after" in trailers) == (error.retry_after is not None)


def test_request_deadline_is_the_earliest_of_call_and_frame_budget() -> None:
    assert convert.request_deadline(None, 0, now=100.0) is None
    assert convert.request_deadline(2.0, 0, now=100.0) == 102.0
    assert convert.request_deadline(None, 500, now=100.0) == 100.5
    assert convert.request_deadline(2.0, 500, now=100.0) == 100.5
    assert convert.request_deadline(0.1, 500, now=100.0) == pytest.approx(100.1)


def test_raw_masks_are_little_endian_row_major() -> None:
    mask = np.arange(12, dtype=np.uint16).reshape(3, 4) * 300
    encoded = convert.encode_mask(with_mask(mask), pb.MASK_FORMAT_RAW, options())
    assert (encoded.width, encoded.height, encoded.dtype) == (4, 3, pb.MASK_DTYPE_UINT16)
    assert np.array_equal(np.frombuffer(encoded.data, "<u2").reshape(3, 4), mask)
    png = convert.encode_mask(with_mask(mask.astype(np.uint8) % 7), pb.MASK_FORMAT_UNSPECIFIED, options())
    assert png.format == pb.MASK_FORMAT_PNG and png.data.startswith(b"\x89PNG")
