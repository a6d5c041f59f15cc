"""Response bodies of the REST API (also the OpenAPI schema at ``/docs``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from server.dataplane import ClassStat


class ErrorBody(BaseModel):
    error: str = Field(description="short stable kind, e.g. queue_full, corrupt_image")
    detail: str = Field(description="human-readable explanation")


class SegmentJSON(BaseModel):
    width: int
    height: int
    classes: list[ClassStat] = Field(description="classes present in the mask, by id")
    mask_png_base64: str = Field(description="the label mask as PNG (8-bit, 16-bit above 256 classes)")
    timings_ms: dict[str, float] = Field(description="server-side time per stage")


class Health(BaseModel):
    status: str


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "invalid argument, corrupt image, or image too large (checked before decoding)",
        413: "request body too large",
        415: "unsupported content type",
        503: "queue full or model not ready (with Retry-After)",
        504: "deadline exceeded",
    }.items()
}
