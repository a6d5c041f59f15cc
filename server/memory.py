"""Process memory: freed buffers go back to the OS, and a byte budget bounds the requests in flight.

``tune_malloc`` (called once at start-up, Linux/glibc only) fixes glibc's mmap threshold at 1 MiB. By
default the threshold *grows* to the size of the largest block freed (up to 32 MiB), after which blocks
of a few MB (a mask, a decoded photo's rows) come from the heap, fragment it and are never returned: RSS
then climbs with every new image size. With a fixed threshold every such buffer is its own mapping,
unmapped when freed (and faulted in afresh when the next one is filled: the mask head's and the
encoders' temporaries are kept below the threshold, the full-size mask and OpenVINO's logits recycled,
``server.recycle``). The number of malloc arenas is capped for the
same reason (every worker thread would otherwise keep its own heap). It also turns off numpy's
``madvise(MADV_HUGEPAGE)`` on large arrays: with every large buffer a fresh mapping, each one's first
touch asked the kernel for transparent huge pages, and on a machine whose THP ``defrag`` setting is
``madvise`` that means direct compaction. Measured on this VM: the OpenVINO pool's per-inference 9.8 MB
output copy then stalled in bursts, a third of lone requests taking 110-200 ms instead of 40 (none with
the advice off).

``MemoryBudget`` admits a request only when its estimated working set (from the image header, before
any pixel is decoded; in native mode also its inference beyond that of the inference size, which the
warm-up already holds: ``inference_cost``) fits beside those in flight; it waits otherwise, and a
request that still does not fit when its wait ends is refused with 503 (never an OOM kill). The
reservation is released when the request's result is garbage-collected (CPython: as soon as the
transport has sent it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from server import errors
from server.recycle import RECYCLER

log = logging.getLogger("segformer.memory")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
#: bytes per decoded pixel: Pillow keeps RGB as 4 bytes a pixel (RGBX)
DECODED_BYTES = 4
#: a request's fixed working memory beside its pixels and mask: the mask head's and the encoders' bands
WORK_BYTES = 16 * 1024 * 1024
#: a reservation this large, released when nothing else is in flight, triggers ``malloc_trim``
TRIM_AFTER = 64 * 1024 * 1024
TRIM_DELAY_S = 0.5
MiB = 1024 * 1024


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    with contextlib.suppress(OSError):
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return None


def tune_malloc(mmap_threshold: int = MiB, arenas: int = 4) -> bool:
    """Fix glibc's mmap threshold and cap its arenas (see module doc); False when not glibc."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold))
    ok &= bool(libc.mallopt(_M_TRIM_THRESHOLD, 4 * mmap_threshold))
    ok &= bool(libc.mallopt(_M_ARENA_MAX, arenas))
    set_hugepage = numpy_hugepage_setter()
    if set_hugepage is not None:
        set_hugepage(False)
    return ok


def numpy_hugepage_setter() -> Callable[[bool], bool] | None:
    """numpy's ``_set_madvise_hugepage`` (returns the previous setting): ``numpy._core`` on numpy 2,
    ``numpy.core`` on 1.x; None if this numpy has none."""
    for package in ("_core", "core"):
        multiarray = getattr(getattr(np, package, None), "multiarray", None)
        setter = getattr(multiarray, "_set_madvise_hugepage", None)
        if setter is not None:
            return setter  # type: ignore[no-any-return]
    return None


def cache_image_memory(max_bytes: int) -> int:
    """Let Pillow keep up to ``max_bytes`` of freed image memory (its blocks, 16 MiB each) for the next
    image (``--image-cache-mib``); the number of blocks. A fresh block is a fresh mapping, and filling it
    page-faults: a 12 Mpx photo's 48 MB of pixels cost ~30 ms of faults per decode, which a reused block
    does not (decode + resize 99 -> 70 ms, in process). ``trim`` empties the cache when the server idles.
    The full-size masks and OpenVINO's logits are kept as much again (``server.recycle``)."""
    blocks = max_bytes // Image.core.get_block_size()
    Image.core.set_blocks_max(blocks)
    RECYCLER.max_bytes = max_bytes
    return int(blocks)


def trim() -> None:
    """Give free heap pages back to the OS (``malloc_trim``), Pillow's cached image blocks and the
    recycled masks and logits; the first is a no-op off glibc."""
    Image.core.clear_cache()
    RECYCLER.clear()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def inference_cost(height: int, width: int, num_labels: int) -> int:
    """Estimated bytes of one image's inference at a model input of ``height`` × ``width``: the input,
    the fp32 logits (a quarter of each side) and SegFormer's stage-1 efficient attention, the largest
    activation: (H/4 · W/4) queries × (H/32 · W/32) keys (reduction ratio 8, one head in every variant),
    its scores and their softmax in fp32 at once. Quadratic in the pixels: 42 MiB at 512×512, 553 MiB at
    1024×1024 (150 classes)."""
    queries = (height // 4) * (width // 4)
    keys = max(1, (height // 32) * (width // 32))
    return height * width * 3 + num_labels * queries * 4 + 2 * queries * keys * 4


class MemoryBudget:
    """Bytes reserved by requests in flight, at most ``limit`` (0: unlimited). Thread-safe release."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._freed = asyncio.Event()

    def cost(
        self, width: int, height: int, decoded: tuple[int, int] | None = None, mask_bytes: int = 2
    ) -> int:
        """A request's working set: its decoded pixels (``decoded`` = (height, width), smaller than the
        image with a DCT-scaled JPEG decode), its mask at full size, and the bands that encode them."""
        pixels = width * height if decoded is None else decoded[0] * decoded[1]
        return pixels * DECODED_BYTES + width * height * mask_bytes + WORK_BYTES

    async def reserve(self, nbytes: int, deadline: float) -> int:
        """Wait until ``nbytes`` fit (or the wait is over: 503); returns what to ``release``."""
        if not self.limit:
            return 0
        self._loop = asyncio.get_running_loop()
        nbytes = min(nbytes, self.limit)  # one request alone always fits
        end = min(deadline, time.monotonic() + 10.0)
        while True:
            with self._lock:
                if self.used + nbytes <= self.limit:
                    self.used += nbytes
                    return nbytes
                self._freed.clear()
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise errors.ServeError(
                    503,
                    "memory_busy",
                    f"the server's memory budget ({self.limit // MiB} MiB) is taken by requests in flight",
                    retry_after=1.0,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._freed.wait(), remaining)

    def release(self, nbytes: int) -> None:
        """Return a reservation (from any thread, e.g. the one that dropped the last reference)."""
        if not nbytes:
            return
        with self._lock:
            self.used -= nbytes
            idle = self.used == 0
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._freed.set)
                if idle and nbytes >= TRIM_AFTER:  # a big request was the last: hand its heap back,
                    loop.call_soon_threadsafe(self._trim_later)  # once its response buffers are gone too

    def _trim_later(self) -> None:
        assert self._loop is not None
        self._loop.call_later(TRIM_DELAY_S, self._trim_if_idle)

    def _trim_if_idle(self) -> None:
        if self.used == 0:
            trim()
