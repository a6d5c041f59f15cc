"""uvicorn's h11 protocol with the edges of HTTP/1.1 guarded: header size, header time, JSON errors.

uvicorn bounds neither how long a client may take to send its request line and headers (an idle or
1-byte/s connection is held forever; ``timeout_keep_alive`` only runs *between* requests) nor, with
httptools, their size. ``GuardedH11Protocol`` (used for every REST connection, see ``server/app.py``):

* arms a timer of ``header_timeout_s`` when a connection opens and after each response; if the request
  line and headers have not all arrived when it fires, the client gets 408 (when it sent anything) and
  the connection is closed;
* refuses a request line + headers above ``h11_max_incomplete_event_size`` (``--max-header-bytes``) with
  431 before h11 parses them (h11 alone only bounds headers that arrive in several reads);
* answers malformed HTTP (both ``Content-Length`` and chunked, ``Content-Length: -1``, garbage) with the
  server's JSON error body instead of uvicorn's plain-text "Invalid HTTP request received.".

Bodies are timed in ``server/rest/body.py`` (the ASGI app sees them chunk by chunk).
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any

import h11
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from server import metrics


def error_bytes(error: str, detail: str) -> bytes:
    return json.dumps({"error": error, "detail": detail}).encode()


class GuardedH11Protocol(H11Protocol):
    """``H11Protocol`` plus a request-header deadline, 431 for oversized headers and JSON 4xx bodies."""

    def __init__(self, *args: Any, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None
        self._head = bytearray()  # the start of what arrived since the last request began (capped)
        self._max_head = self.config.h11_max_incomplete_event_size or 64 * 1024

    def _awaiting_headers(self) -> bool:
        """No request is being answered and the client has not begun one (h11 sees it IDLE); not the
        case while the client still sends the body of a request answered early (a 415, say)."""
        idle = self.conn.their_state is h11.IDLE
        return idle and (self.cycle is None or self.cycle.response_complete)

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._head.clear()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _head_too_large(self, data: bytes) -> bool:
        """Whether the request line + headers seen so far (ending at the blank line) pass the limit."""
        self._head += data[: self._max_head + 4 - len(self._head)]
        end = self._head.find(b"\r\n\r\n")
        return end > self._max_head or (end == -1 and len(self._head) > self._max_head)

    def data_received(self, data: bytes) -> None:
        waiting, before = self._awaiting_headers(), self.cycle
        if waiting and self._head_too_large(data):
            detail = f"the request line and headers exceed the limit of {self._max_head} bytes"
            self._send_error(431, "headers_too_large", detail)
            return
        super().data_received(data)
        if waiting and self.cycle is not before:  # the request line and headers are complete
            self._disarm_header_timer()

    def on_response_complete(self) -> None:
        before = self.cycle
        super().on_response_complete()
        if not self.transport.is_closing() and self.cycle is before:  # no pipelined request started
            self._arm_header_timer()

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._awaiting_headers():
            return
        if self._head and self.conn.our_state is h11.IDLE:
            detail = f"the request line and headers did not arrive within {self.header_timeout_s:g} s"
            self._send_error(408, "request_timeout", detail)
        else:  # an idle connection: nothing to answer
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """h11 refused the request as malformed: JSON 400, then close."""
        self._send_error(400, "bad_request", "malformed HTTP request (see RFC 9112)")

    def _send_error(self, status: int, error: str, detail: str) -> None:
        body = error_bytes(error, detail)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self.logger.warning("HTTP %d %s: %s", status, error, detail)
            metrics.observe_request("rest", "unmatched", status, 0.0, "")  # no route saw this request
            metrics.observe_error("rest", error)
            reason = HTTPStatus(status).phrase.encode()
            response = h11.Response(status_code=status, headers=headers, reason=reason)
            for event in (response, h11.Data(data=body)):
                self.transport.write(self.conn.send(event) or b"")
            self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
        self.transport.close()


class AmbiguousFraming:
    """ASGI middleware: a request with both ``Content-Length`` and ``Transfer-Encoding`` (a request
    smuggling pattern; RFC 9112 §6.3: the server must close after answering) gets 400 and is closed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        names = {name for name, _ in scope.get("headers", ())} if scope["type"] == "http" else set()
        if not {b"content-length", b"transfer-encoding"} <= names:
            await self.app(scope, receive, send)
            return
        body = error_bytes("bad_request", "Content-Length and Transfer-Encoding together are ambiguous")
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        metrics.observe_error("rest", "bad_request")  # the request itself is counted by RequestMetrics
        await send({"type": "http.response.start", "status": 400, "headers": headers})
        await send({"type": "http.response.body", "body": body})
