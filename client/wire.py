"""The gRPC request side of the client: modes and fields as the generated ``segformer.v1`` stubs know them.

A mode (``slide``...) or field (``SegmentRequest.model``) that these stubs lack is a clear
``SegmentationError`` before anything is sent, so the client works with older and newer stubs alike.
"""

from __future__ import annotations

from typing import Any

from client.types import SegmentationError
from server.grpc.gen import segmentation_pb2 as pb

MODES = {
    None: pb.INFERENCE_MODE_UNSPECIFIED,
    "resize": pb.INFERENCE_MODE_RESIZE,
    "native": pb.INFERENCE_MODE_NATIVE,
    "slide": pb.INFERENCE_MODE_SLIDE,
}


def mode_value(mode: str | None) -> int:
    """The gRPC ``InferenceMode`` of ``mode`` (any mode these stubs know, e.g. ``slide`` once added)."""
    if mode in MODES:
        return MODES[mode]
    try:
        return pb.InferenceMode.Value(f"INFERENCE_MODE_{str(mode).upper()}")
    except ValueError:
        known = ", ".join(n[len("INFERENCE_MODE_") :].lower() for n in pb.InferenceMode.keys()[1:])
        raise SegmentationError(
            "INVALID_ARGUMENT", "invalid_argument", f"segformer.v1 has no mode {mode!r} (known: {known})"
        ) from None


def has_field(message: type, name: str) -> bool:
    return name in message.DESCRIPTOR.fields_by_name  # type: ignore[attr-defined]


def segment_request(
    image: bytes, frame_id: int, mode: str | None, mask_format: str, model: str | None
) -> pb.SegmentRequest:
    """A ``SegmentRequest``; ``model`` (empty: the default model) needs stubs with that field."""
    fields: dict[str, Any] = {"image": image, "frame_id": frame_id, "mode": mode_value(mode)}
    if model:
        if not has_field(pb.SegmentRequest, "model"):
            raise SegmentationError(
                "INVALID_ARGUMENT", "invalid_argument", "this segformer.v1 has no SegmentRequest.model field"
            )
        fields["model"] = model
    return pb.SegmentRequest(**fields, mask_format=mask_format_value(mask_format))


def mask_format_value(name: str) -> int:
    return {"png": pb.MASK_FORMAT_PNG, "raw": pb.MASK_FORMAT_RAW}[name]
