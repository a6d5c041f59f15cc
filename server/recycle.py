"""Large arrays whose memory is reused by the next request instead of being mapped and faulted afresh.

With the mmap threshold fixed at 1 MiB (``server.memory.tune_malloc``, for a flat RSS) every buffer above
it is a fresh mapping, and filling one faults it in page by page: ~2.3 µs a page on this VM, ~7 ms for a
12 Mpx photo's 12 MB mask and ~5.5 ms for the 9.8 MB of logits every OpenVINO inference hands over. The
full-size mask (``server.head``) and OpenVINO's logits come from here instead (``empty``).

A buffer goes back to the free list only when nothing can reach its memory any more. The array handed
out is built over a small owner object (``_Lease``, not an ndarray): numpy then makes the array, not the
raw buffer, the ``base`` of every view of it (over an ndarray it would skip to the buffer), so every
view, ``memoryview`` or Pillow image built on the array without a copy keeps the array, and the array
keeps the lease. (The transports encode into bytes of their own before answering; the head's band
threads and the batcher's per-image views hold references.) When the last of them goes, the lease's
finaliser returns the raw buffer. Up to ``max_bytes`` of free buffers are kept, the largest dropped
first, none above ``LARGEST`` of it; a request takes the smallest free buffer of its size to ``SLACK``
times that (photos of other sizes share them); ``clear`` (the idle server's ``trim``) gives them all
back. Not recycled: ONNX Runtime's outputs (views of its own arena, already faulted in: 0 page faults a
run), slide mode's masks, the confidence planes (rarer).
"""

from __future__ import annotations

import bisect
import threading
import weakref
from collections import deque
from math import prod

import numpy as np

#: smaller buffers come from malloc's heap, which reuses them already
MIN_BYTES = 1 << 20
#: a free buffer serves a request of at least 1/SLACK of its size
SLACK = 1.5
#: buffers above this share of ``max_bytes`` are not kept (a native-mode 1024 px image's 39 MB of logits,
#: a batch of 8's 78 MB: one-offs, or too few to matter beside their size)
LARGEST = 0.25


class _Lease:
    """Exports ``raw`` (its first ``nbytes``) as ``shape``/``dtype`` through the array interface."""

    def __init__(self, raw: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.raw = raw
        self.__array_interface__ = {
            "shape": shape,
            "typestr": dtype.str,
            "data": (raw.ctypes.data, False),
            "version": 3,
        }


class Recycler:
    """``empty(shape, dtype)`` like ``np.empty``, from recycled memory (see the module doc).

    A buffer given back goes to ``_returned`` without a lock (``deque.append`` is atomic): the finaliser
    may run inside a garbage collection that started while this thread held the lock, and the lock is
    not reentrant. ``_take`` files the returned buffers under the lock."""

    def __init__(self, max_bytes: int = 0) -> None:
        self.max_bytes = max_bytes
        self._sizes: list[int] = []  # the free buffers' sizes, sorted
        self._free: list[np.ndarray] = []  # the free buffers, in the same order
        self._returned: deque[np.ndarray] = deque()
        self._lock = threading.Lock()
        self.reused = 0  # buffers handed out again (for tests and benchmarks)

    @property
    def held(self) -> int:
        """Bytes of free buffers kept."""
        with self._lock:
            self._file_returned()
            return sum(self._sizes)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = prod(shape) * dtype.itemsize
        if nbytes < MIN_BYTES or not self.max_bytes:
            return np.empty(shape, dtype)
        raw = self._take(nbytes)
        lease = _Lease(raw if raw is not None else np.empty(nbytes, np.uint8), shape, dtype)
        weakref.finalize(lease, self._returned.append, lease.raw).atexit = False
        return np.asarray(lease)

    def clear(self) -> None:
        with self._lock:
            self._returned.clear()
            self._sizes.clear()
            self._free.clear()

    def _take(self, nbytes: int) -> np.ndarray | None:
        """The smallest free buffer of ``nbytes`` to ``SLACK`` x that (other sizes of masks reuse it)."""
        with self._lock:
            self._file_returned()
            index = bisect.bisect_left(self._sizes, nbytes)
            if index == len(self._sizes) or self._sizes[index] > SLACK * nbytes:
                return None
            del self._sizes[index]
            self.reused += 1
            return self._free.pop(index)

    def _file_returned(self) -> None:
        """The buffers given back since, into the sorted free list within ``max_bytes`` (the largest
        go first); under the lock."""
        while self._returned:
            raw = self._returned.popleft()
            if raw.nbytes > self.max_bytes * LARGEST:
                continue
            index = bisect.bisect_left(self._sizes, raw.nbytes)
            self._sizes.insert(index, raw.nbytes)
            self._free.insert(index, raw)
            while sum(self._sizes) > self.max_bytes:
                self._sizes.pop()
                self._free.pop()


#: the process's recycler: off until the server sets its size at start-up (``--image-cache-mib``)
RECYCLER = Recycler()
