"""Response bodies of the REST API (also the OpenAPI schema at ``/docs``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from server.schemas import ModelStatus


class ErrorBody(BaseModel):
    error: str = Field(description="short stable kind, e.g. queue_full, corrupt_image")
    detail: str = Field(description="human-readable explanation")


class Health(BaseModel):
    status: str


class ModelList(BaseModel):
    default: str = Field(description="the model /v1/segment serves")
    models: list[ModelStatus]


class LoadBody(BaseModel):
    source: str | None = Field(
        None, description="new weights (any --model source); default: reload the model's current source"
    )


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "invalid argument, corrupt image, or image too large (checked before decoding)",
        404: "unknown model",
        413: "request body too large",
        415: "unsupported content type",
        503: "queue full or model not ready (with Retry-After)",
        504: "deadline exceeded",
    }.items()
}
