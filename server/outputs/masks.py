"""The label mask's formats: ``png``, ``raw``, ``json`` and ``overlay``, all after the class filter."""

from __future__ import annotations

import base64

import numpy as np
from pydantic import BaseModel, Field

from server import imaging
from server.outputs.base import Encoded, Options, background, kept
from server.types import ClassStat, SegmentResult


class SegmentJSON(BaseModel):
    width: int
    height: int
    model: str = Field(description="the model that answered")
    classes: list[ClassStat] = Field(description="classes present in the mask, by id")
    mask_png_base64: str = Field(description="the label mask as PNG (8-bit, 16-bit above 256 classes)")
    timings_ms: dict[str, float] = Field(description="server-side time per stage")


def filtered(result: SegmentResult, options: Options) -> np.ndarray:
    """The mask with the classes not asked for set to ``background`` (the mask itself when none)."""
    chosen = options.selected(result.spec)
    if chosen is None:
        return result.mask
    table = np.full(background(result.mask.dtype) + 1, background(result.mask.dtype), result.mask.dtype)
    table[list(chosen)] = chosen
    return table[result.mask]


def raw_bytes(mask: np.ndarray) -> bytes:
    """Row-major little-endian bytes of a mask: what ``raw``, gRPC's raw ``Mask`` and OIP's ``mask`` carry."""
    return np.ascontiguousarray(mask, dtype=mask.dtype.newbyteorder("<")).tobytes()


def fields(result: SegmentResult, options: Options) -> dict[str, str]:
    """What every format says beside its bytes: present classes, model, and the filter's background."""
    out = {"classes": ",".join(str(c) for c in kept(result, options)), "model": result.model}
    if options.classes is not None:
        out["background"] = str(background(result.mask.dtype))
    return out


def png(result: SegmentResult, options: Options) -> Encoded:
    return Encoded(imaging.encode_mask_png(filtered(result, options)), "image/png", fields(result, options))


def raw(result: SegmentResult, options: Options) -> Encoded:
    mask = filtered(result, options)
    shape = {"shape": f"{result.height},{result.width}", "dtype": mask.dtype.name}
    return Encoded(raw_bytes(mask), "application/octet-stream", fields(result, options) | shape)


def json(result: SegmentResult, options: Options) -> Encoded:
    chosen = set(kept(result, options))
    body = SegmentJSON(
        width=result.width,
        height=result.height,
        model=result.model,
        classes=[c for c in result.classes if c.id in chosen],
        mask_png_base64=base64.b64encode(imaging.encode_mask_png(filtered(result, options))).decode(),
        timings_ms={k: v * 1000 for k, v in result.timings.items()},
    )
    return Encoded(body.model_dump_json().encode(), "application/json", fields(result, options))


def overlay(result: SegmentResult, options: Options) -> Encoded:
    """The image blended with the class colours; filtered-out pixels are dimmed (blended with black)."""
    if result.image is None:
        raise ValueError("overlay needs the decoded image on the result")
    mask = filtered(result, options)
    palette = result.palette
    if options.classes is not None:  # one black row past the classes: where background lands
        palette = np.vstack([palette[: result.spec.num_labels], np.zeros((1, 3), palette.dtype)])
        mask = np.minimum(mask, result.spec.num_labels)
    body = imaging.overlay_png(result.image, mask, palette, options.alpha)
    return Encoded(body, "image/png", fields(result, options))
