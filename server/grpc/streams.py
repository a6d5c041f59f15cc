"""Ordered bidirectional streams, written once for ``StreamSegment`` (v1) and ``ModelStreamInfer`` (v2).

A stream keeps up to ``inflight`` requests inside the data plane at once: a reader task takes a request
only while it holds a slot, and before taking the next one it waits while that request's model has a
full queue (back-pressure: a busy server makes its streams stop reading instead of failing their
frames). Each request runs in its own task; the answers are written strictly in arrival order and a
slot is freed once its answer is written. A request shed anyway (another stream took the freed room
first) waits for room and tries again until its deadline (``admitted``). Client cancellation cancels
the reader and every request in flight. When the server closes its listeners (SIGTERM, after the drain
delay) a stream still receiving stops reading, answers what it took and ends the call with
UNAVAILABLE (``shutting_down``) so the client resends the rest elsewhere (a stream left open would
only be cut when the grace period ends, losing its requests in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

from server import errors
from server.errors import ServeError
from server.grpc import convert

DEADLINE_SLACK_S = 0.01
DRAIN_POLL_S = 0.05  # how soon an open stream notices the server is shutting down
STREAM_DRAINED = "the server is shutting down: reconnect and resend the frames not answered"
Req = TypeVar("Req")
Resp = TypeVar("Resp")


async def admitted(
    dataplane: Any, model: str | None, deadline: float, work: Callable[[], Awaitable[Resp]]
) -> Resp:
    """``work()``, but when it is shed for a full queue, wait for room and try again; ``queue_full``
    (with its retry-after) only once the wait outlasts ``deadline``."""
    while True:
        try:
            return await work()
        except ServeError as err:
            if err.error != "queue_full" or not await dataplane.wait_for_capacity(
                model, deadline - DEADLINE_SLACK_S
            ):
                raise


class OrderedStream(Generic[Req, Resp]):
    """One call's stream (see the module doc). ``handle`` answers one request and raises only when
    cancelled; ``model`` and ``deadline`` say which queue a request waits on, and until when."""

    def __init__(
        self,
        requests: AsyncIterator[Req],
        handle: Callable[[Req], Awaitable[Resp]],
        *,
        model: Callable[[Req], str | None],
        deadline: Callable[[Req], float],
        dataplane: Any,
        inflight: int,
    ) -> None:
        self._requests, self._handle, self._model, self._deadline = requests, handle, model, deadline
        self._dataplane, self._inflight = dataplane, inflight

    async def respond(self, context: Any) -> AsyncIterator[Resp]:
        """The call's answers, in the requests' order; UNAVAILABLE at the end if the server closed."""
        slots = asyncio.Semaphore(self._inflight)
        pending: asyncio.Queue[asyncio.Task[Resp] | None] = asyncio.Queue()
        draining = asyncio.create_task(_until_closing(self._dataplane))
        reader = asyncio.create_task(self._read(slots, pending, draining))
        try:
            while (task := await pending.get()) is not None:
                yield await task
                slots.release()
            if await reader:  # drained (re-raises a failed read, e.g. the client went away)
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

    async def _read(
        self,
        slots: asyncio.Semaphore,
        pending: asyncio.Queue[asyncio.Task[Resp] | None],
        draining: asyncio.Task[None],
    ) -> bool:
        """Takes requests until the client half-closes (False) or the server closes (True)."""
        following: asyncio.Future[Req] | None = None
        try:
            iterator = aiter(self._requests)
            while True:
                await slots.acquire()
                if draining.done():
                    return True
                following = asyncio.ensure_future(anext(iterator))
                await asyncio.wait((following, draining), return_when=asyncio.FIRST_COMPLETED)
                if not following.done():  # closing: this request was never taken, the client resends it
                    following.cancel()
                    return True
                try:
                    request = following.result()
                except StopAsyncIteration:
                    return False
                # back-pressure: read no further request while this one's model queue is full
                deadline = self._deadline(request)
                await self._dataplane.wait_for_capacity(self._model(request), deadline - DEADLINE_SLACK_S)
                pending.put_nowait(asyncio.create_task(self._handle(request)))
        finally:
            if following is not None:
                _settle(following)
            pending.put_nowait(None)


def _settle(read: asyncio.Future[Any]) -> None:
    """A read of the next request that nobody will await (the call was cancelled meanwhile): cancelled,
    or its outcome marked seen, so asyncio logs no "exception was never retrieved" when it ends."""
    if not read.done():
        read.cancel()
    elif not read.cancelled():
        read.exception()


async def _until_closing(dataplane: Any) -> None:
    """Returns once the server closes its listeners (``dataplane.closing``: after SIGTERM's drain delay;
    during the delay readiness is 503 but streams, like every call, are still served)."""
    while not dataplane.closing:
        await asyncio.sleep(DRAIN_POLL_S)


def drain_queue(queue: asyncio.Queue[Any]) -> list[Any]:
    """Everything left in ``queue`` (a stream's pending request tasks, at its end)."""
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items
