"""``segformer.v1.SegmentationService``: ``Segment``, ordered ``StreamSegment``, ``GetModel``, ``ListModels``.

Every RPC goes through the shared ``DataPlane`` (so gRPC frames batch with REST requests). Bookkeeping
(metrics, tracing, the access log, a ``ServeError`` or anything unexpected → the call's status) is the
interceptor's (``server/grpc/interceptor.py``): handlers only raise ``ServeError``. Streams are
``server.grpc.streams.OrderedStream``: at most ``stream_max_inflight`` frames in the data plane, answered
in order, back-pressure while the queue is full, UNAVAILABLE after a drain; each frame is a request of
its own (``Bookkeeping.frame``), a failed one is answered in its own ``status`` and the stream goes on.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator

import grpc

from server import errors
from server.dataplane import DataPlane
from server.errors import ServeError
from server.grpc import convert
from server.grpc.gen import segmentation_pb2 as pb
from server.grpc.gen import segmentation_pb2_grpc as pb_grpc
from server.grpc.interceptor import Bookkeeping
from server.grpc.streams import OrderedStream, admitted
from server.outputs.formats import keep
from server.settings import Settings
from server.types import SegmentRequest

TRANSPORT = "grpc"
METHOD = "/segformer.v1.SegmentationService/"  # + name: the `endpoint` metric label


class SegmentationServicer(pb_grpc.SegmentationServiceServicer):
    def __init__(self, dataplane: DataPlane, settings: Settings, bookkeeping: Bookkeeping) -> None:
        self._dataplane = dataplane
        self._bookkeeping = bookkeeping
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
            **keep([want.format]),
        )
        result = await self._dataplane.segment(plane_request)
        return await asyncio.to_thread(convert.segment_response, request.frame_id, result, want)

    async def Segment(
        self, request: pb.SegmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.SegmentResponse:
        deadline = convert.request_deadline(context.time_remaining(), request.timeout_ms)
        return await self._segment(request, deadline, METHOD + "Segment")

    async def _frame(self, request: pb.SegmentRequest, time_remaining: float | None) -> pb.SegmentResponse:
        """One stream frame: a response either way (errors go into ``status``); never raises but cancel."""
        endpoint = METHOD + "StreamSegment"
        deadline = self._frame_deadline(request, time_remaining)
        work = functools.partial(self._segment, request, deadline, endpoint)
        admit = functools.partial(admitted, self._dataplane, request.model or None, deadline, work)
        try:
            return await self._bookkeeping.frame(endpoint, request, admit)
        except ServeError as failure:
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

    async def GetModel(
        self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelResponse:
        return convert.model_response(self._dataplane.describe(request.name or None))

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        plane = self._dataplane
        return convert.list_response(plane.repository.default, plane.list_models())
