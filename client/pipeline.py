"""One path for every source: frames in, ``(frame, segmentation)`` out, in order, a bounded number in flight.

``segment_frames`` pulls a frame only when one of ``inflight`` slots is free, sends it through
``SegformerClient.stream`` (gRPC: one ``StreamSegment`` call, the server's back-pressure on top; REST:
``inflight`` concurrent requests) and frees the slot when its answer arrives. A file source simply waits
for a slot: every frame goes, as fast as the server answers. A live source (``client.video.live``)
keeps only its newest frame while the slots are full and counts the frames it drops, so what is sent is
never older than the answers in flight. ``Latencies`` keeps bounded statistics of frame → answer times.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from client.client import SegformerClient
from client.frames import Frame, FrameCodec
from client.types import Ask, Segmentation

SLOT_POLL_S = 0.1  # how often a waiting puller checks that the consumer is still there


@dataclass(frozen=True)
class Request:
    """What is asked of the server for every frame."""

    mode: str | None = None
    model: str | None = None
    mask_format: str = "png"
    codec: FrameCodec = "png"
    inflight: int = 4
    output: Ask | None = None  # a format of the server's registry (polygons, rle...) and its parameters


class Latencies:
    """Frame → answer times: the last ``recent`` (for a live line) and a log histogram of all (1 %
    buckets from 0.1 ms to 1000 s) for the summary; memory does not grow with the number of frames."""

    LOW_S, RATIO, BUCKETS = 1e-4, 1.01, 1620

    def __init__(self, recent: int = 256) -> None:
        self.recent: deque[float] = deque(maxlen=recent)
        self.counts = np.zeros(self.BUCKETS, dtype=np.int64)

    def add(self, seconds: float) -> None:
        self.recent.append(seconds)
        bucket = int(math.log(max(seconds, self.LOW_S) / self.LOW_S, self.RATIO))
        self.counts[min(bucket, self.BUCKETS - 1)] += 1

    def percentile(self, q: float, recent: bool = False) -> float:
        """The ``q``-th percentile in seconds (NaN before the first answer)."""
        if recent:
            return float(np.percentile(self.recent, q)) if self.recent else math.nan
        total = int(self.counts.sum())
        if total == 0:
            return math.nan
        bucket = int(np.searchsorted(np.cumsum(self.counts), math.ceil(q / 100 * total)))
        return self.LOW_S * self.RATIO ** (bucket + 0.5)


def segment_frames(
    client: SegformerClient, frames: Iterable[Frame], request: Request
) -> Iterator[tuple[Frame, Segmentation]]:
    """Each frame with its answer, in order (``Segmentation.error`` set for a refused frame). A call
    that fails as a whole raises ``SegmentationError``; so does a REST server that does not answer, and a
    first frame refused as ``invalid_argument`` (the request's options, not the image)."""
    slots = threading.Semaphore(request.inflight)
    sent: deque[Frame] = deque()
    source = iter(frames)
    done = threading.Event()

    def payloads() -> Iterator[bytes]:
        while True:
            while not slots.acquire(timeout=SLOT_POLL_S):
                if done.is_set():
                    return
            frame = next(source, None)
            if frame is None or done.is_set():
                return
            sent.append(frame)
            yield frame.payload(request.codec)

    results = client.stream(
        payloads(),
        mode=request.mode,
        model=request.model,
        mask_format=request.mask_format,
        inflight=request.inflight,
        output=request.output,
    )
    try:
        for answered, seg in enumerate(results):
            frame = sent.popleft()
            slots.release()
            if seg.error is not None and seg.error.code == "UNAVAILABLE" and not seg.error.error:
                raise seg.error  # no server answered (REST): not this frame's fault
            if answered == 0 and seg.error is not None and seg.error.error == "invalid_argument":
                raise seg.error  # the request itself (a format, a class): every frame would fail so
            yield frame, seg
    finally:
        done.set()
        results.close()  # cancels the gRPC call (client.stream's finally)


class Throughput:
    """Frames answered per second since the first frame, and over the last few seconds."""

    def __init__(self, window_s: float = 2.0) -> None:
        self.start = time.perf_counter()
        self.window_s = window_s
        self._times: deque[float] = deque()
        self.frames = 0

    def add(self) -> None:
        now = time.perf_counter()
        self.frames += 1
        self._times.append(now)
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()

    def fps(self, recent: bool = False) -> float:
        if recent:
            span = self._times[-1] - self._times[0] if len(self._times) > 1 else 0.0
            return (len(self._times) - 1) / span if span > 0 else 0.0
        elapsed = time.perf_counter() - self.start
        return self.frames / elapsed if elapsed > 0 else 0.0
