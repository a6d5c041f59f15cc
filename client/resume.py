"""``ResumableFrames``: the frames of one logical gRPC stream, carried over several ``StreamSegment`` calls.

When a server shuts down (a rolling update) it ends its open streams with UNAVAILABLE after answering
every frame it took. The client then opens a new call (through the load balancer: another replica) and
sends, in order, the frames it sent before that were never answered, then the rest. The caller sees each
frame answered exactly once, in order. Segmentation is idempotent, so a frame whose answer was lost with a
dead connection is simply computed again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator

from client.types import SegmentationError
from server.grpc.gen import segmentation_pb2 as pb


class ResumableFrames:
    """Request iterators for successive calls over one source of frames (``frame_id`` increasing)."""

    def __init__(self, source: Iterable[pb.SegmentRequest]) -> None:
        self._source = iter(source)
        self._lock = threading.Lock()  # gRPC pulls each call's requests from its own thread
        self._pulling = threading.Lock()  # one puller of the source at a time
        self._unanswered: OrderedDict[int, pb.SegmentRequest] = OrderedDict()
        self._exhausted = False
        self._calls = 0

    def requests(self) -> Iterator[pb.SegmentRequest]:
        """One call's requests: the unanswered frames of earlier calls first, then new ones. The
        iterators of earlier calls end (gRPC may still pull from one after its call ended). The source
        is pulled outside the state lock: it may block (a bounded window, a live camera) while answers
        are recorded."""
        with self._lock:
            self._calls += 1
            call = self._calls
        last = -1
        while True:
            with self._lock:
                if call != self._calls:
                    return
                request = next((r for fid, r in self._unanswered.items() if fid > last), None)
                if request is None and self._exhausted:
                    return
            if request is None:
                request = self._pull()
                if request is None or call != self._calls:  # a newer call sends it (it is unanswered)
                    return
            last = request.frame_id
            yield request

    def _pull(self) -> pb.SegmentRequest | None:
        """The source's next request, recorded as unanswered (None once the source is exhausted)."""
        with self._pulling:
            try:
                request = next(self._source)
            except StopIteration:
                with self._lock:
                    self._exhausted = True
                return None
            with self._lock:
                if self._unanswered and request.frame_id <= next(reversed(self._unanswered)):
                    raise ValueError(f"frame ids must increase: {request.frame_id} after the last sent")
                self._unanswered[request.frame_id] = request
            return request

    def answered(self, frame_id: int) -> None:
        """Record the answer to the oldest unanswered frame (answers come in order)."""
        with self._lock:
            expected = next(iter(self._unanswered), None)
            if frame_id != expected:
                raise SegmentationError("INTERNAL", "", f"answer for frame {frame_id}, expected {expected}")
            del self._unanswered[frame_id]

    @property
    def pending(self) -> int:
        """Frames sent and not answered yet."""
        with self._lock:
            return len(self._unanswered)
