"""``RequestTracing``: the REST request's span, request id and access line (outermost ASGI middleware).

Every HTTP request but the probes (``PROBES``: liveness, readiness, metrics) runs in a server span that
continues the caller's W3C ``traceparent``, named by its route template once routed (``POST
/v1/segment``); the data plane adds its stages below it. The request id (``X-Request-ID``, else a new
one) is echoed in the response and put on the request's log lines; one access line is logged when the
response is sent (method and route, status, latency, body bytes). Counting the request in the metrics
stays ``RequestMetrics``' (inside this span, so its latency carries the trace id as an exemplar).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import logs, metrics, tracing

PROBES = frozenset({"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"})


def is_probe(path: str) -> bool:
    """Liveness, readiness (the server's and a model's) and metrics: neither traced nor access-logged."""
    return path in PROBES or path.endswith("/ready")


class RequestTracing:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_probe(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        method, start = scope["method"], time.perf_counter()
        attributes = {"http.request.method": method, "url.path": scope["path"]}
        with (
            logs.request_context(headers) as request_id,
            tracing.server_span(method, headers, attributes) as span,  # named by its route once routed
        ):
            sent = _Sent(send, request_id.encode("latin-1"))
            try:
                await self.app(scope, receive, sent)
            except asyncio.CancelledError:
                sent.status = 499  # the client went away
                raise
            finally:
                route: Any = scope.get("route")
                name = f"{method} {route.path}" if route is not None else method  # unmatched: no path
                span.update_name(name)
                tracing.outcome(sent.status)
                asked = scope.get("state", {}).get("model", "")  # as sent: only a served name is kept
                model = metrics.model_label(asked, scope["app"].state.dataplane.repository.names())
                if model:
                    tracing.annotate({"segformer.model": model})
                logs.access(name, sent.status, time.perf_counter() - start, sent.size, model)


class _Sent:
    """The ``send`` of one request, noting what went out (status, body bytes) and stamping the
    response with ``X-Request-ID``."""

    def __init__(self, send: Send, request_id: bytes) -> None:
        self.send, self.request_id = send, request_id
        self.status = 500
        self.size = 0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            headers = [*message.get("headers", ()), (b"x-request-id", self.request_id)]
            message = {**message, "headers": headers}
        elif message["type"] == "http.response.body":
            self.size += len(message.get("body", b""))
        await self.send(message)
