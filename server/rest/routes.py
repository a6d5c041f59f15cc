"""REST routes (module level, on one router); dependencies come from ``request.app.state``."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from server import errors, imaging, metrics
from server.dataplane import DataPlane, ModelDescription, SegmentRequest, SegmentResult
from server.rest.body import read_image_bytes
from server.rest.schemas import ERROR_RESPONSES, ErrorBody, Health, SegmentJSON
from server.settings import Settings

router = APIRouter()
CLIENT_CLOSED_REQUEST = 499
Format = Literal["png", "json", "overlay"]

_SEGMENT_BODY = {
    "requestBody": {
        "required": True,
        "description": "the image as the raw body, or multipart/form-data with a file field `image`",
        "content": {
            **{t: {"schema": {"type": "string", "format": "binary"}} for t in ("image/jpeg", "image/png")},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "format": "binary"}},
                    "required": ["image"],
                }
            },
        },
    }
}


def _dataplane(request: Request) -> DataPlane:
    return request.app.state.dataplane


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _negotiate(format_: Format | None, accept: str | None) -> Format:
    if format_ is not None:
        return format_
    return "json" if accept and "application/json" in accept.lower() else "png"


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_disconnected(
    request: Request, work: Coroutine[Any, Any, SegmentResult]
) -> SegmentResult | None:
    """Run ``work``; if the client goes away first, cancel it (dropping it from its batch), None."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


def _render(result: SegmentResult, format_: Format, plane: DataPlane, alpha: float) -> Response:
    """Encode the result (runs in a worker thread)."""
    ids = ",".join(str(c.id) for c in result.classes)
    timing = ", ".join(f"{k};dur={v * 1000:.2f}" for k, v in result.timings.items())
    headers = {"X-Segformer-Classes": ids, "Server-Timing": timing}
    if format_ == "overlay":
        assert result.image is not None
        png = imaging.overlay_png(result.image, result.mask, plane.palette, alpha)
        return Response(png, media_type="image/png", headers=headers)
    png = imaging.encode_mask_png(result.mask)
    if format_ == "png":
        return Response(png, media_type="image/png", headers=headers)
    body = SegmentJSON(
        width=result.width,
        height=result.height,
        classes=result.classes,
        mask_png_base64=base64.b64encode(png).decode("ascii"),
        timings_ms={k: v * 1000 for k, v in result.timings.items()},
    )
    return Response(body.model_dump_json(), media_type="application/json", headers=headers)


@router.post(
    "/v1/segment",
    summary="Segment one image",
    response_class=Response,
    responses={
        200: {
            "description": "PNG label mask (default), JSON (format=json or Accept: application/json), "
            "or the blended overlay PNG (format=overlay). Header X-Segformer-Classes lists present ids.",
            "content": {"image/png": {}, "application/json": {"schema": SegmentJSON.model_json_schema()}},
        },
        **ERROR_RESPONSES,
    },
    openapi_extra=_SEGMENT_BODY,
)
async def segment(
    request: Request,
    format: Annotated[Format | None, Query(description="png (default), json or overlay")] = None,
    mode: Annotated[Literal["resize", "native"] | None, Query(description="inference mode")] = None,
    timeout_ms: Annotated[float | None, Query(gt=0, description="deadline in milliseconds")] = None,
    accept: Annotated[str | None, Header()] = None,
    x_request_timeout_ms: Annotated[float | None, Header(gt=0, description="deadline (ms)")] = None,
) -> Response:
    start = time.monotonic()
    plane, settings = _dataplane(request), _settings(request)
    if not plane.ready:
        raise errors.not_ready()
    budget_ms = timeout_ms if timeout_ms is not None else x_request_timeout_ms
    deadline = start + budget_ms / 1000 if budget_ms is not None else None
    data = await read_image_bytes(request, settings.max_body_bytes)
    result = await _unless_disconnected(
        request, plane.segment(SegmentRequest(data, mode, deadline, "rest", "/v1/segment"))
    )
    if result is None:  # nobody to answer; 499 (nginx's "client closed request") for the metrics
        metrics.observe_error("rest", "client_disconnected")
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    chosen = _negotiate(format, accept)
    return await asyncio.to_thread(_render, result, chosen, plane, settings.overlay_alpha)


@router.get("/v1/model", response_model=ModelDescription, responses={503: ERROR_RESPONSES[503]})
async def model(request: Request) -> ModelDescription:
    """Name, variant, classes with labels and colours, inference size, mode, providers, batching."""
    return _dataplane(request).model_info()


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process serves HTTP."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": ErrorBody}})
async def readyz(request: Request) -> Health:
    """Readiness: the model is loaded and warmed up (503 again once the server is stopping)."""
    plane = _dataplane(request)
    if plane.draining:
        raise errors.shutting_down()
    if not plane.ready:
        raise errors.not_ready()
    return Health(status="ready")


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def prometheus_metrics() -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
