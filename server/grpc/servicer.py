"""``segformer.v1.SegmentationService``: ``Segment``, ordered ``StreamSegment``, ``GetModel``, ``ListModels``.

Every RPC goes through the shared ``DataPlane`` (so gRPC frames batch with REST requests). Bookkeeping
is written once: ``@rpc`` times a unary call, records it, and turns a ``ServeError`` (or anything
unexpected, as INTERNAL) into the call's status through the one table in ``convert``. A stream keeps up
to ``stream_max_inflight`` frames inside the data plane at once: a reader task pulls frames only while
it holds a slot, the handler answers them strictly in arrival order and frees the slot once the answer
is written; a failed frame is answered in its own ``status`` and the stream goes on. Client cancellation
cancels the reader and every frame still in flight. On server shutdown a stream still receiving stops
reading, answers what it took and ends with UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from server.settings import Settings
from server.types import SegmentRequest

log = logging.getLogger("segformer.grpc")
TRANSPORT = "grpc"
DEADLINE_SLACK_S = 0.01
DRAIN_POLL_S = 0.05  # how soon an open stream notices the server is shutting down
STREAM_DRAINED = "the server is shutting down: reconnect and resend the frames not answered"
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

    async def _segment(
        self, request: pb.SegmentRequest, deadline: float | None, endpoint: str
    ) -> pb.SegmentResponse:
        """One image through the data plane; raises ``ServeError``."""
        mode = convert.mode(request.mode)
        mask_format = convert.mask_format(request.mask_format)
        if deadline is not None and deadline <= time.monotonic():
            raise errors.deadline_exceeded()
        plane_request = SegmentRequest(
            image=request.image,
            mode=mode,
            deadline=deadline,
            transport=TRANSPORT,
            endpoint=endpoint,
            model=request.model or None,
        )
        result = await self._dataplane.segment(plane_request)
        return await asyncio.to_thread(convert.segment_response, request.frame_id, result, mask_format)

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
            response = await self._segment_when_admitted(request, deadline, endpoint)
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

    # --- stream back-pressure: a full queue makes a stream wait (and stop reading), not fail frames ---

    def _frame_deadline(self, request: pb.SegmentRequest, time_remaining: float | None) -> float:
        deadline = convert.request_deadline(time_remaining, request.timeout_ms)
        return time.monotonic() + self._default_timeout_s if deadline is None else deadline

    async def _wait_for_room(self, request: pb.SegmentRequest, deadline: float) -> bool:
        """Wait while the frame's model has a full queue; False when that outlasts the frame's deadline."""
        return await self._dataplane.wait_for_capacity(request.model or None, deadline - DEADLINE_SLACK_S)

    async def _segment_when_admitted(
        self, request: pb.SegmentRequest, deadline: float, endpoint: str
    ) -> pb.SegmentResponse:
        """``_segment``, but a frame shed for a full queue (other streams took the freed slot first) waits
        for room and tries again; it fails with ``queue_full`` (+ retry-after) only at its deadline."""
        while True:
            try:
                return await self._segment(request, deadline, endpoint)
            except ServeError as err:
                if err.error != "queue_full" or not await self._wait_for_room(request, deadline):
                    raise

    async def StreamSegment(
        self, request_iterator: AsyncIterator[pb.SegmentRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SegmentResponse]:
        slots = asyncio.Semaphore(self._inflight)
        pending: asyncio.Queue[asyncio.Task[pb.SegmentResponse] | None] = asyncio.Queue()
        # Server shutdown (SIGTERM) while the client still sends: stop taking frames, answer the ones
        # taken, then end the call with UNAVAILABLE so the client resends the rest elsewhere (a stream
        # left open would only be cut when the grace period ends, losing its frames in flight).
        draining = asyncio.create_task(_until_draining(self._dataplane))

        async def read() -> bool:
            """Takes frames until the client half-closes (False) or the server drains (True)."""
            try:
                iterator = aiter(request_iterator)
                while True:
                    await slots.acquire()
                    if draining.done():
                        return True
                    next_frame = asyncio.ensure_future(anext(iterator))
                    await asyncio.wait((next_frame, draining), return_when=asyncio.FIRST_COMPLETED)
                    if not next_frame.done():  # draining: this frame was never taken, the client resends it
                        next_frame.cancel()
                        return True
                    try:
                        request = next_frame.result()
                    except StopAsyncIteration:
                        return False
                    # back-pressure: read no further frame while this one's model queue is full
                    remaining = context.time_remaining()
                    await self._wait_for_room(request, self._frame_deadline(request, remaining))
                    pending.put_nowait(asyncio.create_task(self._frame(request, context.time_remaining())))
            finally:
                pending.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (task := await pending.get()) is not None:
                yield await task
                slots.release()
            if await reader:  # (re-raises a failed read, e.g. the client went away)
                failure = errors.shutting_down()
                context.set_trailing_metadata(convert.error_trailers(failure))
                await context.abort(convert.grpc_code(failure), STREAM_DRAINED)
        finally:
            reader.cancel()
            draining.cancel()
            tasks = [t for t in drain_queue(pending) if t is not None]
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.gather(reader, draining, *tasks, return_exceptions=True)

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


async def _until_draining(dataplane: Any) -> None:
    """Returns once the server closes its listeners (``dataplane.closing``: after SIGTERM's drain delay;
    during the delay readiness is 503 but streams, like every call, are still served)."""
    while not dataplane.closing:
        await asyncio.sleep(DRAIN_POLL_S)


def drain_queue(queue: asyncio.Queue[Any]) -> list[Any]:
    """Everything left in ``queue`` (a stream's pending frame tasks, at its end)."""
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
