"""The one gRPC server interceptor: metrics, the error → status table, tracing and the access log.

``Bookkeeping`` wraps every method of ``segformer.v1.SegmentationService`` and the Open Inference
Protocol's ``inference.GRPCInferenceService`` (health and reflection pass untouched), as MLServer's
``PromServerInterceptor`` does, so the servicers only do their work and raise ``ServeError``:

* a unary call runs in a server span that continues the caller's W3C ``traceparent`` (metadata); it is
  timed and counted once (``segformer_requests_total``, bounded ``model`` label: a name that is not
  served is recorded as ``""``), logged in one access line, and a ``ServeError`` becomes the call's
  status through the one table in ``convert`` (with the error kind and ``retry-after`` in the trailers);
* a stream runs in one server span; each of its frames is a request of its own: stream handlers pass
  each frame's work to ``request`` (a request span per frame, its metrics and access line) and answer
  the ``ServeError`` it raises inside the frame's response, so the stream goes on;
* anything unexpected is logged whole and answered ``INTERNAL`` with a fixed message (the client never
  sees a Python exception's text), on every method.

Liveness and readiness (``PROBES``: ``ServerLive``, ``ServerReady``, ``ModelReady``) are counted, but
neither traced nor access-logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.message import Message

from server import errors, logs, metrics, tracing
from server.errors import ServeError
from server.grpc import convert
from server.grpc.streams import DEADLINE_SLACK_S

log = logging.getLogger("segformer.grpc")
TRANSPORT = "grpc"
SERVICES = ("segformer.v1.SegmentationService", "inference.GRPCInferenceService")
PROBES = frozenset(
    f"/inference.GRPCInferenceService/{name}" for name in ("ServerLive", "ServerReady", "ModelReady")
)
INTERNAL_DETAIL = "an unexpected server error (logged on the server)"
Resp = TypeVar("Resp", bound=Message)


class Served(Protocol):
    """What the interceptor needs of the model repository: the names it serves (the metric labels)."""

    def names(self) -> list[str]: ...


def model_of(message: Message | None) -> str | None:
    """The model a request or response names (``model``, ``model_name`` or ``name``), if any."""
    for field in ("model", "model_name", "name"):
        value = getattr(message, field, None)
        if isinstance(value, str) and value:
            return value
    return None


def carrier(context: grpc.aio.ServicerContext) -> dict[str, str]:
    """The call's text metadata (``traceparent``, ``x-request-id``...) as a dict."""
    return {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}


def cancelled_status(context: grpc.aio.ServicerContext) -> int:
    """504 when the call's deadline ran out, else 499 (the client cancelled).

    The client's own deadline timer cancels the call at about the same instant as the server's (the
    server's deadline is later by the one-way latency), so a cancel within 10 ms of it is the deadline.
    """
    remaining = context.time_remaining()
    return 504 if remaining is not None and remaining <= DEADLINE_SLACK_S else 499


class Bookkeeping(grpc.aio.ServerInterceptor):
    """See the module doc. ``repository`` gives the served model names for the metric labels."""

    def __init__(self, repository: Served) -> None:
        self._repository = repository

    async def request(
        self,
        method: str,
        requested: Message,
        work: Callable[[], Awaitable[Resp]],
        cancelled: Callable[[], int] | None = None,
    ) -> Resp:
        """One request (a unary call, or one stream frame): metrics, span attributes, the access line.
        Returns the response or raises the ``ServeError`` to answer (an unexpected exception is logged
        and becomes ``internal`` with a fixed detail). ``cancelled`` says the status of a cancelled
        request (None: 499, the client went away)."""
        start = time.perf_counter()
        served = self._repository.names()
        label = metrics.model_label(model_of(requested), served)
        logs.MODEL.set(label or None)
        try:
            response = await work()
        except ServeError as err:
            failure = err
        except asyncio.CancelledError:
            self._record(method, 499 if cancelled is None else cancelled(), start, label, 0)
            raise
        except grpc.aio.AbortError:  # a handler ended the call itself (its status is the client's)
            raise
        except Exception:
            log.exception("%s failed", method)
            failure = errors.internal(INTERNAL_DETAIL)
        else:
            label = metrics.model_label(model_of(response), served) or label
            self._record(method, 200, start, label, response.ByteSize())
            return response
        metrics.observe_error(TRANSPORT, failure.error)
        self._record(method, failure.status, start, label, 0)
        raise failure

    async def frame(self, method: str, requested: Message, work: Callable[[], Awaitable[Resp]]) -> Resp:
        """One frame of a stream as a request of its own, in its own span (see ``request``)."""
        with tracing.span(method.lstrip("/") + " frame", {"rpc.method": method.rsplit("/", 1)[1]}):
            return await self.request(method, requested, work)

    def _record(self, method: str, status: int, start: float, label: str, size: int) -> None:
        seconds = time.perf_counter() - start
        tracing.outcome(status)
        if label:
            tracing.annotate({"segformer.model": label})
        metrics.observe_request(TRANSPORT, method, status, seconds, label)
        if method not in PROBES:
            logs.access(method, status, seconds, size, label)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.lstrip("/").rsplit("/", 1)[0] not in SERVICES:
            return handler
        codec: Mapping[str, Any] = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            behavior = functools.partial(self._unary, method, handler.unary_unary)
            return grpc.unary_unary_rpc_method_handler(behavior, **codec)
        if handler.stream_stream is not None:
            behavior = functools.partial(self._stream, method, handler.stream_stream)
            return grpc.stream_stream_rpc_method_handler(behavior, **codec)
        return handler

    async def _unary(
        self,
        method: str,
        behavior: Callable[[Message, grpc.aio.ServicerContext], Awaitable[Message]],
        request: Message,
        context: grpc.aio.ServicerContext,
    ) -> Message:
        metadata = carrier(context)
        work = functools.partial(behavior, request, context)
        with logs.request_context(metadata), self._span(method, metadata):
            try:
                cancelled = functools.partial(cancelled_status, context)
                return await self.request(method, request, work, cancelled)
            except ServeError as failure:
                await abort(context, failure)
        raise AssertionError("unreachable: abort raises")

    def _span(self, method: str, metadata: Mapping[str, str]) -> contextlib.AbstractContextManager[object]:
        if method in PROBES:
            return contextlib.nullcontext()
        return tracing.server_span(method.lstrip("/"), metadata, _attributes(method))

    async def _stream(
        self,
        method: str,
        behavior: Callable[[AsyncIterator[Message], grpc.aio.ServicerContext], AsyncIterator[Message]],
        requests: AsyncIterator[Message],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[Message]:
        metadata = carrier(context)
        request_id = logs.request_id(metadata)
        span = None
        if method not in PROBES:
            span = tracing.start_server_span(method.lstrip("/"), metadata, _attributes(method))
        responses = aiter(behavior(requests, context))
        try:
            while True:
                # the request id and span are bound around each step, never across the yield: a call
                # the client cancelled is abandoned at the yield and closed by asyncio's finaliser in
                # another context, where resetting them raised (logged as a task exception)
                with logs.bound(request_id), tracing.current(span):
                    try:
                        response = await anext(responses)
                    except StopAsyncIteration:
                        return
                    except (asyncio.CancelledError, grpc.aio.AbortError):
                        raise
                    except Exception:
                        log.exception("%s failed", method)
                        await abort(context, errors.internal(INTERNAL_DETAIL))
                yield response
        finally:
            if isinstance(responses, AsyncGenerator):
                await responses.aclose()
            if span is not None:
                span.end()


def _attributes(method: str) -> dict[str, str]:
    service, name = method.lstrip("/").rsplit("/", 1)
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


async def abort(context: grpc.aio.ServicerContext, failure: ServeError) -> None:
    """End the call with the ``ServeError``'s status (the one table) and trailers; raises."""
    context.set_trailing_metadata(convert.error_trailers(failure))
    await context.abort(convert.grpc_code(failure), failure.detail)
