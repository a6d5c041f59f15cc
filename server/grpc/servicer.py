"""``segformer.v1.SegmentationService``: ``Segment``, ordered ``StreamSegment``, ``GetModel``, ``ListModels``.

Every RPC goes through the shared ``DataPlane`` (so gRPC frames batch with REST requests). Bookkeeping
is written once: ``@rpc`` times a unary call, records it, and turns a ``ServeError`` (or anything
unexpected, as INTERNAL) into the call's status through the one table in ``convert``. Streams are
``server.grpc.streams.OrderedStream``: at most ``stream_max_inflight`` frames in the data plane, answered
in order, back-pressure while the queue is full, UNAVAILABLE after a drain; a failed frame is answered
in its own ``status`` and the stream goes on.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from server import errors, metrics
from server.dataplane import DataPlane
from server.errors import ServeError
from server.grpc import convert
from server.grpc.gen import segmentation_pb2 as pb
from server.grpc.gen import segmentation_pb2_grpc as pb_grpc
from server.grpc.streams import DEADLINE_SLACK_S, OrderedStream, admitted
from server.settings import Settings
from server.types import SegmentRequest

log = logging.getLogger("segformer.grpc")
TRANSPORT = "grpc"
METHOD = "/segformer.v1.SegmentationService/"  # + name: the `endpoint` metric label
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]


def rpc(name: str) -> Callable[[Handler[Req, Resp]], Handler[Req, Resp]]:
    """Metrics and error mapping for a unary RPC ``name`` (the one place they are written)."""

    def decorate(method: Handler[Req, Resp]) -> Handler[Req, Resp]:
        endpoint = METHOD + name

        @functools.wraps(method)
        async def handler(self: Any, request: Req, context: grpc.aio.ServicerContext) -> Resp:
            start = time.perf_counter()
            model = getattr(request, "model", "") or getattr(request, "name", "")
            try:
                response = await method(self, request, context)
            except ServeError as err:
                failure = err
            except asyncio.CancelledError:  # the client cancelled, or the call's deadline passed
                status = _cancelled_status(context)
                metrics.observe_request(TRANSPORT, endpoint, status, time.perf_counter() - start, model)
                raise
            except Exception:
                log.exception("%s failed", name)
                failure = errors.internal(f"an unexpected server error in {name} (logged on the server)")
            else:
                model = getattr(response, "model", "") or model
                metrics.observe_request(TRANSPORT, endpoint, 200, time.perf_counter() - start, model)
                return response
            metrics.observe_request(TRANSPORT, endpoint, failure.status, time.perf_counter() - start, model)
            metrics.observe_error(TRANSPORT, failure.error)
            context.set_trailing_metadata(convert.error_trailers(failure))
            await context.abort(convert.grpc_code(failure), failure.detail)
            raise AssertionError("unreachable: abort raises")

        return handler

    return decorate


class SegmentationServicer(pb_grpc.SegmentationServiceServicer):
    def __init__(self, dataplane: DataPlane, settings: Settings) -> None:
        self._dataplane = dataplane
        self._inflight = settings.stream_max_inflight
        self._default_timeout_s = settings.request_timeout_ms / 1000
        self._overlay_alpha = settings.overlay_alpha

    async def _segment(
        self, request: pb.SegmentRequest, deadline: float | None, endpoint: str
    ) -> pb.SegmentResponse:
        """One image through the data plane; raises ``ServeError``."""
        mode = convert.mode(request.mode)
        want = convert.wanted(request, self._overlay_alpha)
        if deadline is not None and deadline <= time.monotonic():
            raise errors.deadline_exceeded()
        plane_request = SegmentRequest(
            image=request.image,
            mode=mode,
            deadline=deadline,
            transport=TRANSPORT,
            endpoint=endpoint,
            model=request.model or None,
            keep_logits=want.format is not None and want.format.needs_logits,
        )
        result = await self._dataplane.segment(plane_request)
        return await asyncio.to_thread(convert.segment_response, request.frame_id, result, want)

    @rpc("Segment")
    async def Segment(
        self, request: pb.SegmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.SegmentResponse:
        deadline = convert.request_deadline(context.time_remaining(), request.timeout_ms)
        return await self._segment(request, deadline, METHOD + "Segment")

    async def _frame(self, request: pb.SegmentRequest, time_remaining: float | None) -> pb.SegmentResponse:
        """One stream frame: a response either way (errors go into ``status``); never raises but cancel."""
        start, endpoint = time.perf_counter(), METHOD + "StreamSegment"
        deadline = self._frame_deadline(request, time_remaining)
        try:
            work = functools.partial(self._segment, request, deadline, endpoint)
            response = await admitted(self._dataplane, request.model or None, deadline, work)
        except ServeError as err:
            failure = err
        except asyncio.CancelledError:
            metrics.observe_request(TRANSPORT, endpoint, 499, time.perf_counter() - start, request.model)
            raise
        except Exception:  # a frame must not take the stream down
            log.exception("stream frame %d failed", request.frame_id)
            failure = errors.internal("an unexpected server error (logged on the server)")
        else:
            metrics.observe_request(TRANSPORT, endpoint, 200, time.perf_counter() - start, response.model)
            return response
        metrics.observe_request(
            TRANSPORT, endpoint, failure.status, time.perf_counter() - start, request.model
        )
        metrics.observe_error(TRANSPORT, failure.error)
        return convert.frame_error(request.frame_id, failure)

    def _frame_deadline(self, request: pb.SegmentRequest, time_remaining: float | None) -> float:
        deadline = convert.request_deadline(time_remaining, request.timeout_ms)
        return time.monotonic() + self._default_timeout_s if deadline is None else deadline

    async def StreamSegment(
        self, request_iterator: AsyncIterator[pb.SegmentRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SegmentResponse]:
        stream = OrderedStream(
            request_iterator,
            lambda request: self._frame(request, context.time_remaining()),
            model=lambda request: request.model or None,
            deadline=lambda request: self._frame_deadline(request, context.time_remaining()),
            dataplane=self._dataplane,
            inflight=self._inflight,
        )
        async for response in stream.respond(context):
            yield response

    @rpc("GetModel")
    async def GetModel(
        self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelResponse:
        return convert.model_response(self._dataplane.describe(request.name or None))

    @rpc("ListModels")
    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        plane = self._dataplane
        return convert.list_response(plane.repository.default, plane.list_models())


def _cancelled_status(context: grpc.aio.ServicerContext) -> int:
    """504 when the call's deadline ran out, else 499 (the client cancelled).

    The client's own deadline timer cancels the call at about the same instant as the server's (the
    server's deadline is later by the one-way latency), so a cancel within 10 ms of it is the deadline.
    """
    remaining = context.time_remaining()
    return 504 if remaining is not None and remaining <= DEADLINE_SLACK_S else 499
