"""What the server's answers become: a ``Segmentation`` from a gRPC ``SegmentResponse``, a
``SegmentationError`` from a gRPC status or an HTTP error body, the model description from ``GetModel``."""

from __future__ import annotations

import json
from typing import Any

import grpc
import httpx
from google.protobuf import json_format

from client.types import ClassInfo, Output, Segmentation, SegmentationError
from client.wire import has_field, mask_format_name
from server.grpc.gen import segmentation_pb2 as pb

_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def from_proto(response: pb.SegmentResponse) -> Segmentation:
    if response.HasField("status"):
        status = response.status
        code = _CODE_NAMES.get(status.code, str(status.code))
        error = SegmentationError(code, status.error, status.message, frame_id=response.frame_id)
        return Segmentation(frame_id=response.frame_id, error=error)
    mask = response.mask
    output = None
    if has_field(pb.SegmentResponse, "output") and response.HasField("output"):
        out = response.output
        output = Output(out.format, out.content_type, out.data, dict(out.fields))
    return Segmentation(
        output=output,
        width=mask.width,
        height=mask.height,
        mask_data=mask.data,
        mask_format=mask_format_name(mask.format),
        dtype="uint16" if mask.dtype == pb.MASK_DTYPE_UINT16 else "uint8",
        classes=[ClassInfo(c.id, c.label, c.pixels, c.fraction) for c in response.classes],
        timings=dict(response.timings),
        frame_id=response.frame_id,
    )


def rpc_error(exc: grpc.RpcError) -> SegmentationError:
    trailers = dict(exc.trailing_metadata() or ())  # type: ignore[attr-defined]
    return SegmentationError(exc.code().name, str(trailers.get("segformer-error", "")), exc.details() or "")  # type: ignore[attr-defined]


def http_error(response: httpx.Response) -> SegmentationError:
    try:
        error: dict[str, Any] = response.json()
    except ValueError:  # not the server's JSON error (a proxy?)
        error = {"detail": response.text[:200]}
    if not isinstance(error, dict):
        error = {"detail": str(error)[:200]}
    detail = error.get("detail", "")
    return SegmentationError(str(response.status_code), str(error.get("error", "")), str(detail))


def details(response: pb.GetModelResponse) -> dict[str, Any]:
    """``details_json`` as sent (key order, integers); from a server without it, the ``details`` Struct
    with its doubles that hold whole numbers given back as integers."""
    if has_field(pb.GetModelResponse, "details_json") and response.details_json:
        body: dict[str, Any] = json.loads(response.details_json)
        return body
    return _integers(json_format.MessageToDict(response.details))


def _integers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integers(v) for v in value]
    return value


def resumable(exc: grpc.RpcError) -> bool:
    """UNAVAILABLE, or the server's "shutting down" that a proxy relayed as a reset (CANCELLED)."""
    if exc.code() == grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
        return True
    return ("segformer-error", "shutting_down") in tuple(exc.trailing_metadata() or ())  # type: ignore[attr-defined]
