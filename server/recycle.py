"""Large arrays whose memory is reused by the next request instead of being mapped and faulted afresh.

With the mmap threshold fixed at 1 MiB (``server.memory.tune_malloc``, for a flat RSS) every buffer above
it is a fresh mapping, and filling one faults it in page by page: ~2.3 µs a page on this VM, ~7 ms for a
12 Mpx photo's 12 MB mask and ~5.5 ms for the 9.8 MB of logits every OpenVINO inference hands over. The
full-size mask (``server.head``) and OpenVINO's logits come from here instead (``empty``).

A buffer goes back to the free list only when nothing can reach its memory any more. The array handed
out is built over a small owner object (``_Lease``, not an ndarray), so numpy does not collapse its
views' ``base`` past it: every view, ``memoryview``, Pillow image or protobuf/HTTP body built on the
array without a copy keeps the array alive, and the array keeps the lease. When the last of them goes,
the lease's finaliser returns the raw buffer. Up to ``max_bytes`` of free buffers are kept, the
largest dropped first; a request takes the smallest free buffer of its size to ``SLACK`` times that
(photos of other sizes share them); ``clear`` (the idle server's ``trim``) gives them all back.
"""

from __future__ import annotations

import bisect
import threading
import weakref
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
    """``empty(shape, dtype)`` like ``np.empty``, from recycled memory (see the module doc)."""

    def __init__(self, max_bytes: int = 0) -> None:
        self.max_bytes = max_bytes
        self._free: list[np.ndarray] = []  # raw buffers, by size
        self._held = 0
        self._lock = threading.Lock()
        self.reused = 0  # buffers handed out again (for tests and benchmarks)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = prod(shape) * dtype.itemsize
        if nbytes < MIN_BYTES or not self.max_bytes:
            return np.empty(shape, dtype)
        raw = self._take(nbytes)
        lease = _Lease(raw if raw is not None else np.empty(nbytes, np.uint8), shape, dtype)
        weakref.finalize(lease, self._give, lease.raw)
        return np.asarray(lease)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()
            self._held = 0

    def _take(self, nbytes: int) -> np.ndarray | None:
        """The smallest free buffer of ``nbytes`` to ``SLACK`` x that (other sizes of masks reuse it)."""
        with self._lock:
            index = bisect.bisect_left(self._free, nbytes, key=_size)
            if index == len(self._free) or self._free[index].nbytes > SLACK * nbytes:
                return None
            raw = self._free.pop(index)
            self._held -= raw.nbytes
            self.reused += 1
            return raw

    def _give(self, raw: np.ndarray) -> None:
        with self._lock:
            if raw.nbytes > self.max_bytes * LARGEST:
                return
            while self._held + raw.nbytes > self.max_bytes:  # the largest goes first
                self._held -= self._free.pop().nbytes
            bisect.insort(self._free, raw, key=_size)
            self._held += raw.nbytes


def _size(raw: np.ndarray) -> int:
    return int(raw.nbytes)


#: the process's recycler: off until the server sets its size at start-up (``--image-cache-mib``)
RECYCLER = Recycler()
