"""Dynamic batcher below every transport: bounded queue, shape-keyed batches, deadlines.

Requests wait in one FIFO per batch key, the model input's shape (in ``resize`` mode every image has
the inference size, so images of any original size batch together; ``native`` buckets by the rounded
size). A batch gives each request its low-resolution logits; the mask at the request's own size is made
per image afterwards (``server.head``). A single dispatcher takes a free
session, picks the key whose oldest request waited longest, lets that batch fill for at most
``max_queue_delay`` (or until ``max_batch_size``), and runs it in the background while forming the next.
With ``fill_only_while_arriving`` (the data plane's choice) the fill wait only happens while another
request is on its way (inside ``arriving``: being decoded and preprocessed): a lone request on an idle
server is dispatched at once instead of waiting ``max_queue_delay`` for company that cannot come —
unless a batch finished less than a batch's run time ago (its clients, closed loops, may be about to
send again: then the batch waits ``max_queue_delay`` for them as well).
A cancelled or expired request is dropped before its batch runs and its result is discarded if it
expires while running; the other requests of the batch are unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort
from opentelemetry.trace import SpanContext

from server import errors, tracing
from server.metrics import BATCH_SIZE, QUEUE_DEPTH, SESSION_RUNS
from server.runtimes.onnxruntime import SessionPool

log = logging.getLogger("segformer.batcher")
BatchKey = tuple[int, ...]


@dataclass(eq=False)
class _Item:
    key: BatchKey
    image: np.ndarray
    deadline: float | None
    future: asyncio.Future[tuple[np.ndarray, float, float]]
    enqueued: float = field(default_factory=time.monotonic)
    queued: bool = True
    trace: SpanContext | None = field(default_factory=tracing.current_context)  # the batch span links it


class Batcher:
    """Groups single-image requests into batches for a ``SessionPool``."""

    def __init__(
        self,
        pool: SessionPool,
        max_batch_size: int,
        max_queue_delay_s: float,
        max_queue_size: int,
        *,
        fill_only_while_arriving: bool = False,
        model: str = "",
    ) -> None:
        self.pool = pool
        self.model = model  # the metrics' model label
        self.fill_only_while_arriving = fill_only_while_arriving
        self.max_batch_size = min(max_batch_size, pool.spec.fixed_batch or max_batch_size)
        self.max_queue_delay_s = max_queue_delay_s
        self.max_queue_size = max_queue_size
        self._queues: dict[BatchKey, deque[_Item]] = {}
        self._pending = 0
        self._wakeup = asyncio.Event()
        self._arriving = 0  # requests being decoded/preprocessed: they may join a batch soon
        self._freed = asyncio.Event()  # set whenever a queue slot frees (wait_for_capacity)
        self._running: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._batch_seconds = 0.1  # moving average, for Retry-After

    def start(self) -> None:
        self._task = asyncio.create_task(self._dispatch_forever(), name="batcher")

    async def infer(self, image: np.ndarray, deadline: float | None) -> tuple[np.ndarray, float, float]:
        """Logits ``[C, h, w]`` for one uint8 ``[H, W, 3]`` image, with (queue seconds, inference seconds)."""
        self.check_capacity()
        future: asyncio.Future[tuple[np.ndarray, float, float]] = asyncio.get_running_loop().create_future()
        item = _Item(image.shape, image, deadline, future)
        self._queues.setdefault(item.key, deque()).append(item)
        self._pending += 1
        QUEUE_DEPTH.labels(self.model).set(self._pending)
        future.add_done_callback(lambda _: self._unqueue(item))
        self._wakeup.set()
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return await asyncio.wait_for(future, timeout)  # cancels `future` on timeout or cancellation
        except TimeoutError:
            raise errors.deadline_exceeded() from None

    def check_capacity(self, arriving: bool = False) -> None:
        """Raise 503 when a new request would be refused: closed, or the queue is full (with
        ``arriving``, counting the requests being decoded too: shed before decoding)."""
        if self._closed:
            raise errors.shutting_down()
        if self._full(arriving):
            batches_ahead = self._pending / self.max_batch_size / self.pool.size
            raise errors.queue_full(retry_after=max(1, math.ceil(batches_ahead * self._batch_seconds)))

    def _full(self, arriving: bool = True) -> bool:
        return self._pending + (self._arriving if arriving else 0) >= self.max_queue_size

    async def wait_for_capacity(self, timeout: float | None) -> bool:
        """Wait (up to ``timeout`` s) until ``check_capacity(arriving=True)`` would pass: True, or False
        when the time ran out or the batcher closed. For back-pressure (gRPC streams stop reading)."""
        end = None if timeout is None else time.monotonic() + timeout
        while self._full() and not self._closed:
            remaining = None if end is None else end - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._freed.clear()
            try:
                await asyncio.wait_for(self._freed.wait(), remaining)
            except TimeoutError:
                return False
        return not self._closed

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Wrap a request's work before ``infer``: a forming batch waits to fill only while one is in here."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1
            self._freed.set()

    def _unqueue(self, item: _Item) -> None:
        """Take ``item`` out of its queue (dispatched, cancelled or expired); idempotent."""
        if not item.queued:
            return
        item.queued = False
        queue = self._queues.get(item.key)
        if queue is not None:
            with contextlib.suppress(ValueError):
                queue.remove(item)
            if not queue:
                del self._queues[item.key]
        self._pending -= 1
        QUEUE_DEPTH.labels(self.model).set(self._pending)
        self._freed.set()

    def _alone(self) -> bool:
        """The only request around, and it arrived after the last batch finished (nobody waited)."""
        key = self._oldest_key()
        if key is None or self._pending + self._arriving > 1:
            return False
        return self._queues[key][0].enqueued >= self.pool.idle_since

    def _oldest_key(self) -> BatchKey | None:
        heads = [(queue[0].enqueued, key) for key, queue in self._queues.items() if queue]
        return min(heads)[1] if heads else None

    async def _wait_for_work(self, timeout: float | None = None) -> bool:
        self._wakeup.clear()
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _dispatch_forever(self) -> None:
        while True:
            try:
                await self._dispatch_one()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the dispatcher die: every queued request would hang
                log.exception("batch dispatch failed; continuing")
                await asyncio.sleep(0.01)

    async def _dispatch_one(self) -> None:
        while self._pending == 0:
            await self._wait_for_work()
        session = await self.pool.acquire(alone=self._alone())
        try:
            items = await self._form_batch()
        except BaseException:
            self.pool.release(session)
            raise
        if not items:
            self.pool.release(session)
            return
        task = asyncio.create_task(self._run(session, items))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _form_batch(self) -> list[_Item]:
        key = self._oldest_key()
        if key is None:
            return []
        fill_until = self._queues[key][0].enqueued + self.max_queue_delay_s
        # a batch ran a moment ago: its closed-loop clients are likely to send again, so wait for them too
        recent = time.monotonic() - self.pool.idle_since < self._batch_seconds
        while len(self._queues.get(key, ())) < self.max_batch_size:
            remaining = fill_until - time.monotonic()
            nobody_coming = self.fill_only_while_arriving and not self._arriving and not recent
            if remaining <= 0 or nobody_coming or not await self._wait_for_work(remaining):
                break
        queue = self._queues.get(key, deque())
        batch: list[_Item] = []
        now = time.monotonic()
        while queue and len(batch) < self.max_batch_size:
            item = queue[0]
            self._unqueue(item)
            if item.future.done():
                continue
            if item.deadline is not None and item.deadline <= now:
                item.future.set_exception(errors.deadline_exceeded("the deadline expired in the queue"))
                continue
            batch.append(item)
        return batch

    async def _run(self, session: ort.InferenceSession, items: list[_Item]) -> None:
        start = time.monotonic()
        BATCH_SIZE.labels(self.model).observe(len(items))
        SESSION_RUNS.labels(self.model, self.pool.kind(session)).inc()
        try:
            images = items[0].image[None] if len(items) == 1 else np.stack([i.image for i in items])
            with tracing.batch_span([i.trace for i in items], self._span_attributes(session, len(items))):
                logits = await self.pool.run(session, images)
        except Exception as exc:
            log.exception("inference failed for a batch of %d", len(items))
            for item in items:
                if not item.future.done():
                    item.future.set_exception(errors.internal(f"inference failed: {type(exc).__name__}"))
            return
        finally:
            self.pool.release(session)
        seconds = time.monotonic() - start
        self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * seconds
        for index, item in enumerate(items):
            if not item.future.done():  # a request that expired meanwhile is simply dropped
                item.future.set_result((logits[index], start - item.enqueued, seconds))

    def _span_attributes(self, session: ort.InferenceSession, size: int) -> tracing.Attributes:
        pool = self.pool
        return {
            "segformer.model": self.model,
            "segformer.batch.size": size,
            "segformer.lane": pool.kind(session),
            "segformer.runtime": pool.runtime,
            "segformer.precision": pool.precision,
        }

    @property
    def pending(self) -> int:
        return self._pending

    async def close(self, timeout: float) -> None:
        """Refuse new work, let queued and running batches finish (up to ``timeout``), stop."""
        self._closed = True
        end = time.monotonic() + timeout
        while (self._pending or self._running) and time.monotonic() < end:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
