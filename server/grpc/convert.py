"""Between the data plane and the wire: the one ``ServeError`` → ``grpc.StatusCode`` table, and messages.

REST renders a ``ServeError`` with its HTTP ``status``; gRPC maps that status here, once, for unary calls
(a call status) and stream frames (``FrameStatus`` in the frame's response) alike.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from google.protobuf import struct_pb2

from server import errors, metrics, tracing
from server.errors import ServeError
from server.grpc.gen import segmentation_pb2 as pb
from server.outputs.base import Options, kept, options
from server.outputs.formats import FORMATS, OutputFormat
from server.types import SegmentResult

Code = grpc.StatusCode

# HTTP status (optionally refined by the error kind) → gRPC code. Looked up by (status, kind) first.
STATUS_TABLE: dict[int | tuple[int, str], grpc.StatusCode] = {
    400: Code.INVALID_ARGUMENT,  # corrupt image, bad argument, absurd dimensions, decompression bomb
    404: Code.NOT_FOUND,
    408: Code.DEADLINE_EXCEEDED,
    413: Code.INVALID_ARGUMENT,  # too large: not retryable as is (unlike RESOURCE_EXHAUSTED)
    415: Code.INVALID_ARGUMENT,  # not an image format we decode
    422: Code.INVALID_ARGUMENT,
    429: Code.RESOURCE_EXHAUSTED,
    499: Code.CANCELLED,
    500: Code.INTERNAL,
    501: Code.UNIMPLEMENTED,
    503: Code.RESOURCE_EXHAUSTED,  # overload: the batcher's queue is full (retry-after in the trailers)
    (503, "not_ready"): Code.UNAVAILABLE,  # still loading / warming up: health says NOT_SERVING
    (503, "shutting_down"): Code.UNAVAILABLE,
    504: Code.DEADLINE_EXCEEDED,
}

MODES = {
    pb.INFERENCE_MODE_RESIZE: "resize",
    pb.INFERENCE_MODE_NATIVE: "native",
    pb.INFERENCE_MODE_SLIDE: "slide",
}
#: ``MaskFormat`` -> the registry's format (server/outputs/formats.py) that writes ``Mask.data``
MASK_FORMATS = {pb.MASK_FORMAT_UNSPECIFIED: "png", pb.MASK_FORMAT_PNG: "png", pb.MASK_FORMAT_RAW: "raw"}
DTYPES = {np.dtype(np.uint8): pb.MASK_DTYPE_UINT8, np.dtype(np.uint16): pb.MASK_DTYPE_UINT16}


def mode(value: int) -> str | None:
    """The data plane's mode for an ``InferenceMode`` (None: the model's default); 400 for unknown values."""
    if value == pb.INFERENCE_MODE_UNSPECIFIED:
        return None
    if value not in MODES:
        raise errors.invalid_argument(
            f"unknown inference mode {value}; use 1 (RESIZE), 2 (NATIVE) or 3 (SLIDE)"
        )
    return MODES[value]


def mask_format(value: int) -> int:
    """A known ``MaskFormat`` or 400 (unknown values are not silently PNG)."""
    if value not in MASK_FORMATS:
        raise errors.invalid_argument(f"unknown mask format {value}; use 1 (PNG) or 2 (RAW)")
    return value


@dataclass(frozen=True)
class Wanted:
    """What a ``SegmentRequest`` asks for beyond its image: a registry format (None: ``mask`` in
    ``mask_format``) and the output options."""

    format: OutputFormat | None
    mask_format: int
    options: Options


def wanted(request: pb.SegmentRequest, alpha: float) -> Wanted:
    """The request's output, checked (INVALID_ARGUMENT in words before any inference)."""
    chosen = options(list(request.classes) or None, request.tolerance, request.min_area, alpha)
    fmt = FORMATS.get(request.format) if request.format else None
    if fmt is not None:
        FORMATS.check(fmt, chosen)
    return Wanted(fmt, mask_format(request.mask_format), chosen)


def grpc_code(err: ServeError) -> grpc.StatusCode:
    """The gRPC status code for a ``ServeError`` (unlisted: INTERNAL for 5xx, INVALID_ARGUMENT for 4xx)."""
    code = STATUS_TABLE.get((err.status, err.error)) or STATUS_TABLE.get(err.status)
    if code is None:
        code = Code.INTERNAL if err.status >= 500 else Code.INVALID_ARGUMENT
    return code


def error_trailers(err: ServeError) -> tuple[tuple[str, str], ...]:
    """Trailing metadata: the error kind, and ``retry-after`` (whole seconds) when the server set one."""
    trailers = [("segformer-error", err.error)]
    if err.retry_after is not None:
        trailers.append(("retry-after", str(max(1, math.ceil(err.retry_after)))))
    return tuple(trailers)


def frame_error(frame_id: int, err: ServeError) -> pb.SegmentResponse:
    """A stream frame's failure, carried in its response (the stream goes on)."""
    retry = max(1, math.ceil(err.retry_after)) if err.retry_after is not None else 0
    status = pb.FrameStatus(
        code=grpc_code(err).value[0], error=err.error, message=err.detail, retry_after_s=retry
    )
    return pb.SegmentResponse(frame_id=frame_id, status=status)


def request_deadline(time_remaining: float | None, timeout_ms: int, now: float | None = None) -> float | None:
    """The data plane deadline (``time.monotonic()`` based): the call's deadline, or the frame's budget."""
    now = time.monotonic() if now is None else now
    candidates = [now + time_remaining] if time_remaining is not None else []
    if timeout_ms:
        candidates.append(now + timeout_ms / 1000.0)
    return min(candidates) if candidates else None


def encode_mask(result: SegmentResult, mask_format: int, chosen: Options) -> pb.Mask:
    """``Mask``: PNG (default) or raw row-major bytes (uint16 little-endian), both from the registry."""
    encoded = FORMATS.get(MASK_FORMATS[mask_format]).encode(result, chosen)
    raw = mask_format == pb.MASK_FORMAT_RAW
    return pb.Mask(
        format=pb.MASK_FORMAT_RAW if raw else pb.MASK_FORMAT_PNG,
        dtype=DTYPES[result.mask.dtype],
        width=result.width,
        height=result.height,
        data=encoded.data,
    )


def segment_response(frame_id: int, result: SegmentResult, want: Wanted) -> pb.SegmentResponse:
    """A data plane ``SegmentResult`` as a response (encodes the mask: run it off the event loop)."""
    present = set(kept(result, want.options))  # first: computing them records the postprocess timing
    classes = [
        pb.ClassStat(id=c.id, label=c.label, pixels=c.pixels, fraction=c.fraction)
        for c in result.classes
        if c.id in present
    ]
    start = time.perf_counter()
    mask, output = None, None
    if want.format is None:
        mask = encode_mask(result, want.mask_format, want.options)
    else:
        encoded = want.format.encode(result, want.options)
        output = pb.Output(
            format=want.format.name,
            content_type=encoded.content_type,
            data=encoded.data,
            fields=encoded.fields,
        )
    timings = {name: float(seconds) for name, seconds in result.timings.items()}
    timings["encode"] = time.perf_counter() - start
    metrics.observe_stage(result.model, "encode", timings["encode"])
    shown = want.format.name if want.format is not None else pb.MaskFormat.Name(want.mask_format)
    tracing.encoded(timings["encode"], shown)
    return pb.SegmentResponse(
        frame_id=frame_id, mask=mask, classes=classes, timings=timings, model=result.model, output=output
    )


def model_response(description: Any) -> pb.GetModelResponse:
    """``GetModel``: typed fields for the common ones, plus the whole REST ``GET /v1/models/{name}`` body."""
    body: dict[str, Any] = description.model_dump(mode="json")
    details = struct_pb2.Struct()
    details.update(body)
    size = body.get("inference_size") or [0, 0]
    classes = [
        pb.ModelClass(id=int(c["id"]), label=str(c["label"]), color=list(c.get("color") or []))
        for c in body.get("classes", [])
    ]
    return pb.GetModelResponse(
        name=str(body.get("name", "")),
        variant=str(body.get("variant", "")),
        num_labels=int(body.get("num_labels", len(classes))),
        classes=classes,
        inference_height=int(size[0]),
        inference_width=int(size[1]),
        mode=str(body.get("mode", "")),
        mask_dtype=str(body.get("mask_dtype", "")),
        providers=[str(p) for p in body.get("providers", [])],
        version=int(body.get("version", 0)),
        source_sha256=str(body.get("source_sha256", "")),
        details=details,
        details_json=json.dumps(body),
    )


def list_response(default: str, statuses: list[Any]) -> pb.ListModelsResponse:
    """``ListModels``: the repository's models (``ModelStatus`` each), as REST ``GET /v1/models``."""
    models = [
        pb.ModelStatus(
            name=s.name,
            state=s.state,
            default=s.default,
            version=s.version,
            source_sha256=s.source_sha256,
            error=s.error or "",
            reloading=s.reloading,
        )
        for s in statuses
    ]
    return pb.ListModelsResponse(default=default, models=models)
