"""``segformer.v1.SegmentationService``: unary ``Segment``, ordered ``StreamSegment``, ``GetModel``.

Both RPCs go through the shared ``DataPlane`` (so gRPC frames batch with REST requests). A stream keeps
up to ``stream_max_inflight`` frames inside the data plane at once: a reader task pulls frames only
while it holds a slot, the handler answers them strictly in arrival order and frees the slot once the
answer is written. Client cancellation cancels the reader and every frame still in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from server import errors, metrics
from server.dataplane import SegmentRequest
from server.errors import ServeError
from server.grpc import convert
from server.grpc.gen import segmentation_pb2 as pb
from server.grpc.gen import segmentation_pb2_grpc as pb_grpc
from server.settings import Settings

log = logging.getLogger("segformer.grpc")
TRANSPORT = "grpc"
DEADLINE_SLACK_S = 0.01
METHOD = "/segformer.v1.SegmentationService/"  # + name: the `endpoint` metric label


class SegmentationServicer(pb_grpc.SegmentationServiceServicer):
    def __init__(self, dataplane: Any, settings: Settings) -> None:
        self._dataplane = dataplane
        self._inflight = settings.stream_max_inflight

    async def _segment(
        self, request: pb.SegmentRequest, deadline: float | None, endpoint: str
    ) -> pb.SegmentResponse:
        """One image through the data plane; raises ``ServeError``."""
        if not self._dataplane.ready:
            raise errors.not_ready()
        mode = convert.MODES.get(request.mode)
        if request.mode and mode is None:
            raise errors.invalid_argument(f"unknown inference mode {request.mode}")
        if deadline is not None and deadline <= time.monotonic():
            raise errors.deadline_exceeded()
        plane_request = SegmentRequest(
            image=request.image, mode=mode, deadline=deadline, transport=TRANSPORT, endpoint=endpoint
        )
        result = await self._dataplane.segment(plane_request)
        # off the event loop; encode_mask_png records the encode stage metric itself
        return await asyncio.to_thread(
            convert.segment_response, request.frame_id, result, request.mask_format
        )

    async def Segment(
        self, request: pb.SegmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.SegmentResponse:
        start, endpoint = time.perf_counter(), METHOD + "Segment"
        deadline = convert.request_deadline(context.time_remaining(), request.timeout_ms)
        try:
            response = await self._segment(request, deadline, endpoint)
        except ServeError as err:
            failure = err
        except asyncio.CancelledError:  # the client cancelled, or the call's deadline passed
            metrics.observe_request(
                TRANSPORT, endpoint, _cancelled_status(context), time.perf_counter() - start
            )
            raise
        except Exception as exc:
            log.exception("Segment failed")
            failure = errors.internal(f"{type(exc).__name__}: {exc}")
        else:
            metrics.observe_request(TRANSPORT, endpoint, 200, time.perf_counter() - start)
            return response
        metrics.observe_request(TRANSPORT, endpoint, failure.status, time.perf_counter() - start)
        metrics.observe_error(TRANSPORT, failure.error)
        context.set_trailing_metadata(convert.error_trailers(failure))
        await context.abort(convert.grpc_code(failure), failure.detail)

    async def _frame(self, request: pb.SegmentRequest, time_remaining: float | None) -> pb.SegmentResponse:
        """One stream frame: a response either way (errors go into ``status``); never raises but cancel."""
        start = time.perf_counter()
        deadline = convert.request_deadline(time_remaining, request.timeout_ms)
        failure: ServeError | None = None
        try:
            response = await self._segment(request, deadline, METHOD + "StreamSegment")
        except ServeError as err:
            failure = err
        except asyncio.CancelledError:
            metrics.observe_request(TRANSPORT, METHOD + "StreamSegment", 499, time.perf_counter() - start)
            raise
        except Exception as exc:  # a frame must not take the stream down
            log.exception("stream frame %d failed", request.frame_id)
            failure = errors.internal(f"{type(exc).__name__}: {exc}")
        elapsed = time.perf_counter() - start
        if failure is None:
            metrics.observe_request(TRANSPORT, METHOD + "StreamSegment", 200, elapsed)
            return response
        metrics.observe_request(TRANSPORT, METHOD + "StreamSegment", failure.status, elapsed)
        metrics.observe_error(TRANSPORT, failure.error)
        return convert.frame_error(request.frame_id, failure)

    async def StreamSegment(
        self, request_iterator: AsyncIterator[pb.SegmentRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SegmentResponse]:
        slots = asyncio.Semaphore(self._inflight)
        pending: asyncio.Queue[asyncio.Task[pb.SegmentResponse] | None] = asyncio.Queue()

        async def read() -> None:
            try:
                iterator = aiter(request_iterator)
                while True:
                    await slots.acquire()
                    try:
                        request = await anext(iterator)
                    except StopAsyncIteration:
                        return
                    pending.put_nowait(asyncio.create_task(self._frame(request, context.time_remaining())))
            finally:
                pending.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (task := await pending.get()) is not None:
                yield await task
                slots.release()
            await reader  # re-raise a failed read (e.g. the client went away)
        finally:
            reader.cancel()
            tasks = [t for t in _drain(pending) if t is not None]
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.gather(reader, *tasks, return_exceptions=True)

    async def GetModel(
        self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelResponse:
        start = time.perf_counter()
        try:
            response = convert.model_response(self._dataplane.model_info())
        except ServeError as err:  # not loaded yet: UNAVAILABLE, like REST's 503
            metrics.observe_request(TRANSPORT, METHOD + "GetModel", err.status, time.perf_counter() - start)
            context.set_trailing_metadata(convert.error_trailers(err))
            await context.abort(convert.grpc_code(err), err.detail)
        metrics.observe_request(TRANSPORT, METHOD + "GetModel", 200, time.perf_counter() - start)
        return response


def _drain(queue: asyncio.Queue[Any]) -> list[Any]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def _cancelled_status(context: grpc.aio.ServicerContext) -> int:
    """504 when the call's deadline ran out, else 499 (the client cancelled).

    The client's own deadline timer cancels the call at about the same instant as the server's (the
    server's deadline is later by the one-way latency), so a cancel within 10 ms of it is the deadline.
    """
    remaining = context.time_remaining()
    return 504 if remaining is not None and remaining <= DEADLINE_SLACK_S else 499
