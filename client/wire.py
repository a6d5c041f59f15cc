"""The gRPC request side of the client: modes and fields as the generated ``segformer.v1`` stubs know them.

A mode (``slide``...) or field (``SegmentRequest.model``) that these stubs lack is a clear
``SegmentationError`` before anything is sent, so the client works with older and newer stubs alike.
"""

from __future__ import annotations

from typing import Any

from client.types import Ask, SegmentationError
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
    image: bytes,
    frame_id: int,
    mode: str | None,
    mask_format: str,
    model: str | None,
    output: str | Ask | None = None,
) -> pb.SegmentRequest:
    """A ``SegmentRequest``; ``model`` (empty: the default model) and ``output`` (a format of the
    server's registry, passed as named: the server checks it, and its parameters) need stubs with
    those fields."""
    ask = Ask.of(output)
    fields: dict[str, Any] = {"image": image, "frame_id": frame_id, "mode": mode_value(mode)}
    asked = [("model", model), ("format", ask.format), *ask.parameters().items()]
    for name, value in asked:
        if value:
            if not has_field(pb.SegmentRequest, name):
                raise SegmentationError(
                    "INVALID_ARGUMENT", "invalid_argument", f"this segformer.v1 has no SegmentRequest.{name}"
                )
            fields[name] = value
    return pb.SegmentRequest(**fields, mask_format=mask_format_value(mask_format))


def mask_formats() -> list[str]:
    """The mask formats these stubs know (``png``, ``raw``, and whatever a newer ``segformer.v1`` adds)."""
    return [n[len("MASK_FORMAT_") :].lower() for n in pb.MaskFormat.keys()[1:]]


def mask_format_value(name: str) -> int:
    """The gRPC ``MaskFormat`` of ``name``; a clear ``SegmentationError`` for one these stubs lack."""
    try:
        return pb.MaskFormat.Value(f"MASK_FORMAT_{name.upper()}")
    except ValueError:
        raise SegmentationError(
            "INVALID_ARGUMENT",
            "invalid_argument",
            f"segformer.v1 has no mask format {name!r} (known: {', '.join(mask_formats())})",
        ) from None


def mask_format_name(value: int) -> str:
    """``MASK_FORMAT_RAW`` → ``raw`` (``png`` for unspecified)."""
    name = pb.MaskFormat.Name(value) if value else "MASK_FORMAT_PNG"
    return name[len("MASK_FORMAT_") :].lower()
