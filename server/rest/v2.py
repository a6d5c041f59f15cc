"""REST ``/v2``: the Open Inference Protocol (KServe v2) with Triton's binary data and configuration.

Routes are module-level functions on ``router``; everything they do goes through ``V2Service`` (one data
plane below every protocol). Errors are answered as the protocol says, ``{"error": "<detail>"}``, with
the ``ServeError``'s HTTP status (and ``Retry-After``): ``V2Route`` renders them for these routes only, so
``/v1`` keeps its ``{"error", "detail"}`` body.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from server import errors, metrics
from server.errors import ServeError
from server.rest.body import BodyLimits, read_limited
from server.rest.disconnect import client_closed, unless_disconnected
from server.rest.v2_body import HEADER, parse_infer, render_infer
from server.v2 import models
from server.v2.service import V2Service

TRANSPORT = "rest"
log = logging.getLogger("segformer.rest")


def v2_error(exc: ServeError) -> JSONResponse:
    metrics.observe_error(TRANSPORT, exc.error)
    headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after else None
    return JSONResponse({"error": exc.detail}, status_code=exc.status, headers=headers)


class V2Route(APIRoute):
    """An ``APIRoute`` whose ``ServeError``s (and request validation errors) render as ``{"error"}``."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except ServeError as exc:
                return v2_error(exc)
            except RequestValidationError as exc:
                detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                return v2_error(errors.invalid_argument(detail))
            except Exception:  # answered here, so the connection stays usable (no re-raise to uvicorn)
                log.exception("unhandled error on %s", request.url.path)
                return v2_error(errors.internal("an unexpected server error (logged on the server)"))

        return handle


router = APIRouter(prefix="/v2", route_class=V2Route, tags=["v2 (Open Inference Protocol)"])


def _service(request: Request) -> V2Service:
    return V2Service(request.app.state.dataplane, request.app.state.settings)


@router.get("/health/live")
async def server_live() -> dict[str, bool]:
    """Liveness: 200 while the process serves HTTP."""
    return {"live": True}


@router.get("/health/ready")
async def server_ready(request: Request) -> dict[str, bool]:
    """Readiness: 200 when every model is loaded and warm, else 400 (the protocol's "false")."""
    if not _service(request).server_ready():
        raise ServeError(400, "not_ready", "the server is not ready")
    return {"ready": True}


@router.get("")
async def server_metadata(request: Request) -> dict[str, Any]:
    """Server name, version and extensions (binary_tensor_data, model_configuration)."""
    return _service(request).server_metadata()


@router.get("/models/{model_name}")
@router.get("/models/{model_name}/versions/{model_version}")
async def model_metadata(request: Request, model_name: str, model_version: str = "") -> dict[str, Any]:
    """The model's versions, platform and tensors (404 for an unknown model or version)."""
    return _service(request).model_metadata(model_name, model_version)


@router.get("/models/{model_name}/ready")
@router.get("/models/{model_name}/versions/{model_version}/ready")
async def model_ready(request: Request, model_name: str, model_version: str = "") -> dict[str, Any]:
    """200 when the model is ready, 400 when not (404 when unknown)."""
    if not _service(request).model_ready(model_name, model_version):
        raise ServeError(400, "not_ready", f"model {errors.shown(model_name)} is not ready")
    return {"name": model_name, "ready": True}


@router.get("/models/{model_name}/config")
@router.get("/models/{model_name}/versions/{model_version}/config")
async def model_config(request: Request, model_name: str, model_version: str = "") -> dict[str, Any]:
    """Triton's model configuration (the model_configuration extension)."""
    return _service(request).model_config(model_name, model_version)


@router.post("/models/{model_name}/infer")
@router.post("/models/{model_name}/versions/{model_version}/infer")
async def model_infer(
    request: Request,
    model_name: str,
    model_version: str = "",
    inference_header_content_length: Annotated[str | None, Header(alias=HEADER)] = None,
) -> Response:
    """Inference: JSON tensors, or a JSON header followed by binary tensor data."""
    start = time.monotonic()
    settings = request.app.state.settings
    service = _service(request)
    request.state.model, _ = models.resolve(service.plane, model_name, model_version)  # 404 before the body
    body = await read_limited(request, BodyLimits.of(settings))
    parsed = parse_infer(body, inference_header_content_length, model_name, model_version)
    endpoint = request.scope["route"].path if "route" in request.scope else "/v2/models/{model_name}/infer"
    result = await unless_disconnected(request, service.infer(parsed, TRANSPORT, endpoint, deadline=None))
    if result is None:  # the client went away while it waited: cancelled, 499 (server/rest/disconnect.py)
        return client_closed()
    content, header = await asyncio.to_thread(render_infer, result, parsed.parameters)
    timing = {"Server-Timing": f"total;dur={(time.monotonic() - start) * 1000:.2f}"}
    if header is None:
        return Response(content, media_type="application/json", headers=timing)
    headers = {HEADER: str(header), **timing}
    return Response(content, media_type="application/octet-stream", headers=headers)


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"], include_in_schema=False)
async def unknown_endpoint(path: str) -> None:
    """Anything else under ``/v2`` (Triton's repository, statistics, shared memory...): 404 ``{"error"}``."""
    raise ServeError(404, "not_found", f"no endpoint /v2/{path} (segformer-serve serves docs/v2.md's)")
