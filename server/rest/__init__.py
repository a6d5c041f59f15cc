"""The REST transport: a FastAPI app over the shared ``DataPlane``.

Errors are rendered once here as ``{"error": kind, "detail": text}`` with the ``ServeError`` status;
every request is counted in ``segformer_requests_total`` by a small ASGI middleware.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import errors, metrics
from server.dataplane import DataPlane
from server.errors import ServeError
from server.rest.observe import RequestTracing
from server.rest.protocol import AmbiguousFraming
from server.settings import Settings

log = logging.getLogger("segformer.rest")
TRANSPORT = "rest"


#: Statuses after which the connection is closed: the rest of the body is never read (413), or the
#: client is too slow to keep a connection for (408).
CLOSE_AFTER = frozenset({408, 413})


def error_response(exc: ServeError) -> JSONResponse:
    headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after else {}
    if exc.status in CLOSE_AFTER:
        headers["Connection"] = "close"
    return JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)


async def _serve_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServeError)
    metrics.observe_error(TRANSPORT, exc.error)
    return error_response(exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return await _serve_error(request, errors.invalid_argument(detail))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return await _serve_error(request, ServeError(exc.status_code, kind, str(exc.detail)))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return await _serve_error(request, errors.internal("an unexpected server error (logged on the server)"))


class RequestMetrics:
    """Counts every HTTP request by route template and final status, and times it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        except asyncio.CancelledError:
            status = 499  # the client went away
            raise
        finally:
            route: Any = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            asked = scope.get("state", {}).get("model", "")  # set by a route once it knows the model
            model = metrics.model_label(asked, scope["app"].state.dataplane.repository.names())
            metrics.observe_request(TRANSPORT, endpoint, status, time.perf_counter() - start, model)


def build_rest_app(dataplane: DataPlane, settings: Settings) -> FastAPI:
    """The FastAPI app; ``dataplane`` and ``settings`` are put on ``app.state`` for the routes."""
    from server.rest import admin, demo, routes, v2

    docs = settings.docs  # --no-docs: no /docs, /redoc or /openapi.json
    app = FastAPI(
        title="segformer-serve",
        summary="SegFormer semantic segmentation over REST (and gRPC)",
        version="1",
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
    )
    app.state.dataplane = dataplane
    app.state.settings = settings
    app.state.admin_token = settings.admin_secret()
    app.include_router(routes.router)
    app.include_router(admin.router)
    app.include_router(v2.router)  # the Open Inference Protocol; renders its own errors ({"error"})
    if settings.demo:
        app.include_router(demo.router)
    app.add_exception_handler(ServeError, _serve_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(AmbiguousFraming)
    app.add_middleware(RequestMetrics)  # counts every answer
    app.add_middleware(RequestTracing)  # outermost: the request's span, request id and access line
    return app
