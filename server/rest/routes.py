"""REST routes of the v1 API (module level, on one router); dependencies come from ``request.app.state``."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY
from prometheus_client.exposition import choose_encoder

from server import errors, metrics, tracing
from server.dataplane import DataPlane
from server.outputs.base import Options, options
from server.outputs.formats import FORMATS, OutputFormat, keep
from server.outputs.masks import SegmentJSON
from server.rest.body import BodyLimits, read_image_bytes
from server.rest.disconnect import client_closed, unless_disconnected
from server.rest.schemas import ERROR_RESPONSES, ErrorBody, Health, ModelList
from server.schemas import ModelDescription
from server.settings import Settings
from server.types import SegmentRequest, SegmentResult

router = APIRouter()
ModelName = Annotated[str, Path(description="a served model's name (GET /v1/models)")]

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
_SEGMENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "PNG label mask (default) or another format (format=, or Accept naming its content "
        "type; docs/outputs.md). Header X-Segformer-Classes lists present ids.",
        "content": {
            "image/png": {},
            "application/json": {"schema": SegmentJSON.model_json_schema()},
            **{
                f.content_type: {}
                for f in FORMATS.formats
                if f.content_type not in ("image/png", "application/json")
            },
        },
    },
    **ERROR_RESPONSES,
}


def _dataplane(request: Request) -> DataPlane:
    return request.app.state.dataplane


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _render(result: SegmentResult, fmt: OutputFormat, chosen: Options) -> Response:
    """Encode the result in ``fmt`` (runs in a worker thread); the format's fields become headers."""
    start = time.perf_counter()
    encoded = fmt.encode(result, chosen)
    metrics.observe_stage(result.model, "encode", time.perf_counter() - start)
    tracing.encoded(time.perf_counter() - start, fmt.name)
    timing = ", ".join(f"{k};dur={v * 1000:.2f}" for k, v in result.timings.items())
    headers = {f"X-Segformer-{k.title()}": v for k, v in encoded.fields.items()}
    headers["Server-Timing"] = timing
    return Response(encoded.data, media_type=encoded.content_type, headers=headers)


@dataclass(frozen=True)
class OutputQuery:
    """The output parameters of a segment request (one dependency for both routes)."""

    format: str | None
    classes: str | None
    tolerance: float | None
    min_area: float | None
    accept: str | None


async def _segment(
    request: Request,
    model: str | None,
    output: OutputQuery,
    mode: str | None,
    timeout_ms: float | None,
    header_timeout_ms: float | None,
) -> Response:
    start = time.monotonic()
    plane, settings = _dataplane(request), _settings(request)
    fmt = FORMATS.negotiate(output.format, output.accept)
    chosen = options(output.classes, output.tolerance, output.min_area, settings.overlay_alpha)
    FORMATS.check(fmt, chosen)
    request.state.model = plane.repository.get(model).name  # 404 / 503 before reading the body
    budget_ms = timeout_ms if timeout_ms is not None else header_timeout_ms
    deadline = start + budget_ms / 1000 if budget_ms is not None else None
    data = await read_image_bytes(request, BodyLimits.of(settings))
    endpoint = request.scope["route"].path
    plane_request = SegmentRequest(data, mode, deadline, "rest", endpoint, model, **keep([fmt]))
    work = plane.segment(plane_request)
    result = await unless_disconnected(request, work)
    if result is None:  # nobody to answer (server/rest/disconnect.py)
        return client_closed()
    return await asyncio.to_thread(_render, result, fmt, chosen)


AcceptHeader = Annotated[str | None, Header()]
FormatQuery = Annotated[
    str | None, Query(description=f"one of {', '.join(FORMATS.names)} (docs/outputs.md); default png")
]
ClassesQuery = Annotated[
    str | None, Query(description="comma-separated class ids or labels; the others become background")
]
PixelsQuery = Annotated[float | None, Query(allow_inf_nan=False, description="polygons: pixels (>= 0)")]


def output_query(
    format: FormatQuery = None,
    classes: ClassesQuery = None,
    tolerance: PixelsQuery = None,
    min_area: PixelsQuery = None,
    accept: AcceptHeader = None,
) -> OutputQuery:
    return OutputQuery(format, classes, tolerance, min_area, accept)


Output = Annotated[OutputQuery, Depends(output_query)]
ModeQuery = Annotated[Literal["resize", "native", "slide"] | None, Query(description="inference mode")]
TimeoutQuery = Annotated[
    float | None,
    Query(gt=0, allow_inf_nan=False, description="deadline in ms (at most --max-request-timeout-ms)"),
]
TimeoutHeader = Annotated[float | None, Header(gt=0, allow_inf_nan=False, description="deadline (ms)")]


@router.post(
    "/v1/segment",
    summary="Segment one image with the default model",
    response_class=Response,
    responses=_SEGMENT_RESPONSES,
    openapi_extra=_SEGMENT_BODY,
)
async def segment(
    request: Request,
    output: Output,
    mode: ModeQuery = None,
    timeout_ms: TimeoutQuery = None,
    x_request_timeout_ms: TimeoutHeader = None,
) -> Response:
    return await _segment(request, None, output, mode, timeout_ms, x_request_timeout_ms)


@router.post(
    "/v1/models/{name}/segment",
    summary="Segment one image with the model `name`",
    response_class=Response,
    responses={**_SEGMENT_RESPONSES, 404: {"model": ErrorBody, "description": "unknown model"}},
    openapi_extra=_SEGMENT_BODY,
)
async def segment_with(
    request: Request,
    name: ModelName,
    output: Output,
    mode: ModeQuery = None,
    timeout_ms: TimeoutQuery = None,
    x_request_timeout_ms: TimeoutHeader = None,
) -> Response:
    return await _segment(request, name, output, mode, timeout_ms, x_request_timeout_ms)


@router.get("/v1/model", response_model=ModelDescription, responses={503: ERROR_RESPONSES[503]})
async def model(request: Request) -> ModelDescription:
    """The default model: name, version, classes with labels and colours, inference size, batching."""
    return _dataplane(request).describe(None)


@router.get("/v1/models", response_model=ModelList)
async def models(request: Request) -> ModelList:
    """Every model with its state (loading, ready, unloading, failed), version and source hash."""
    plane = _dataplane(request)
    return ModelList(default=plane.repository.default, models=plane.list_models())


@router.get(
    "/v1/models/{name}",
    response_model=ModelDescription,
    responses={404: {"model": ErrorBody}, 503: ERROR_RESPONSES[503]},
)
async def model_named(request: Request, name: ModelName) -> ModelDescription:
    """The serving version of model ``name`` (503 while its first version is loading)."""
    return _dataplane(request).describe(name)


@router.get("/v1/models/{name}/ready", response_model=Health, responses={404: {"model": ErrorBody}})
async def model_ready(request: Request, name: ModelName) -> Health:
    """Readiness of one model: 200 while a version of it serves."""
    plane = _dataplane(request)
    status = plane.status(name)  # 404 for an unknown model
    if not plane.is_ready(name):
        raise errors.model_not_ready(name, status.state, status.error)
    return Health(status="ready")


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process serves HTTP."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": ErrorBody}})
async def readyz(request: Request) -> Health:
    """Readiness: the server can serve what it served: its start-up loads have finished and a model
    serves (503 while starting, when no model serves, and once stopping). A failed model does not count:
    it shows in ``GET /v1/models`` and its own readiness."""
    plane = _dataplane(request)
    if plane.draining:
        raise errors.shutting_down()
    if not plane.is_ready():
        starting = plane.repository.starting()
        detail = f"models loading: {', '.join(starting)}" if starting else "no model serves"
        raise errors.ServeError(503, "not_ready", detail, retry_after=1.0)
    return Health(status="ready")


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def prometheus_metrics(accept: AcceptHeader = None) -> Response:
    """Prometheus metrics; the OpenMetrics exposition (with the latency exemplars' trace ids) when the
    scraper accepts ``application/openmetrics-text``."""
    encode, media = choose_encoder(accept or "")
    return Response(encode(REGISTRY), media_type=media)
