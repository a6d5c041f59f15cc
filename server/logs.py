"""Logging: text or JSON lines (``--log-format``), request context on every line, one access line per request.

In JSON each line is an object with ``time``, ``level``, ``logger``, ``message`` and, inside a request,
``trace_id`` and ``span_id`` (the current OpenTelemetry span, when tracing is on), ``request_id`` (the
caller's ``X-Request-ID`` header / ``x-request-id`` metadata, else a fresh one) and ``model``; the
transports write one ``segformer.access`` line per request (``access``) with the method or RPC, status,
latency and response bytes. ``configure`` is called once by ``server.__main__`` (never at import).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import time
import uuid
from collections.abc import Iterator, Mapping

from server import tracing

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("segformer_request_id", default=None)
MODEL: contextvars.ContextVar[str | None] = contextvars.ContextVar("segformer_model", default=None)
access_log = logging.getLogger("segformer.access")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request's ids and model when the line is logged inside one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = tracing.ids()
        if current is not None:
            line["trace_id"], line["span_id"] = current
        for key, var in (("request_id", REQUEST_ID), ("model", MODEL)):
            value = var.get()
            if value:
                line[key] = value
        line.update(getattr(record, "access", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: str, log_format: str) -> None:
    """The root handler, once, from the settings (``--log-level``, ``--log-format``)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def request_id(headers: Mapping[str, str]) -> str:
    """The caller's ``x-request-id`` (at most 128 characters), else a new one."""
    return (headers.get("x-request-id") or "")[:128] or uuid.uuid4().hex


@contextlib.contextmanager
def request_context(headers: Mapping[str, str]) -> Iterator[str]:
    """The request id (``request_id``) for the lines logged inside."""
    with bound(request_id(headers)) as current:
        yield current


@contextlib.contextmanager
def bound(request: str) -> Iterator[str]:
    """``request`` as the request id of the lines logged inside (and no model yet). Never hold it across
    a ``yield`` of an async generator: one abandoned there is closed in another context, where the
    reset raises (a gRPC stream binds it around each step instead)."""
    token = REQUEST_ID.set(request)
    model_token = MODEL.set(None)
    try:
        yield request
    finally:
        MODEL.reset(model_token)
        REQUEST_ID.reset(token)


def access(method: str, status: int, seconds: float, size: int, model: str = "") -> None:
    """The access line of one request (``segformer.access`` at INFO)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    fields = {"method": method, "status": status, "latency_ms": round(seconds * 1000, 3), "bytes": size}
    if model:
        fields["model"] = model
    access_log.info("%s %d %.1f ms %d bytes", method, status, seconds * 1000, size, extra={"access": fields})
