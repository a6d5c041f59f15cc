"""``server.recycle.Recycler``: a large array's memory is reused only once nothing can reach it."""

from __future__ import annotations

import gc
import resource
import threading

import numpy as np
from PIL import Image

from server.recycle import MIN_BYTES, Recycler

PHONE = (3024, 4032)  # a 12 Mpx photo's mask


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def test_a_dropped_mask_is_reused_without_faulting_its_pages_again() -> None:
    recycler = Recycler(64 << 20)
    first = recycler.empty(PHONE, np.uint8)
    assert first.shape == PHONE and first.dtype == np.uint8 and first.flags.writeable
    first[:] = 7
    address = first.ctypes.data
    del first
    before = _faults()
    second = recycler.empty(PHONE, np.uint8)
    second[:] = 1
    assert _faults() - before < 100  # a fresh 12 MB mapping: ~3,000 pages
    assert second.ctypes.data == address and recycler.reused == 1
    logits = recycler.empty((2, 150, 128, 128), np.float32)  # other sizes and types: own buffers
    assert logits.dtype == np.float32 and logits.shape == (2, 150, 128, 128)
    assert logits.ctypes.data != address


def test_views_pillow_images_and_memoryviews_keep_the_memory_theirs() -> None:
    """Whatever was built on the array without a copy holds it: a view (numpy does not collapse its base
    past the lease), a Pillow image over it, a memoryview. A new array never shares their memory."""
    recycler = Recycler(64 << 20)
    for keep in (
        lambda mask: mask[100:200].T,
        lambda mask: Image.fromarray(mask),
        lambda mask: memoryview(mask),
        lambda mask: mask.reshape(-1).view(np.int8),
    ):
        mask = recycler.empty(PHONE, np.uint8)
        mask[:] = 5
        held = keep(mask)
        del mask
        gc.collect()
        other = recycler.empty(PHONE, np.uint8)
        other[:] = 9
        assert np.asarray(held).min() == 5 and np.asarray(held).max() == 5
        del held, other
        gc.collect()


def test_other_sizes_share_buffers_within_the_slack_and_the_cap_holds() -> None:
    recycler = Recycler(64 << 20)
    recycler.empty(PHONE, np.uint8)  # dropped at once: its buffer is free
    smaller = recycler.empty((3000, 4000), np.uint8)  # within 1.5x: the same buffer
    assert recycler.reused == 1
    del smaller
    tiny = recycler.empty((1024, 1024), np.uint8)  # 12x smaller: not given a 12 MB buffer
    assert recycler.reused == 1
    del tiny
    held = [recycler.empty((2000, 3000), np.uint8) for _ in range(12)]  # 72 MB free > the 64 MiB cap
    del held
    gc.collect()
    assert 58 << 20 <= recycler.held <= 64 << 20
    recycler.empty((5000, 5000), np.uint8)  # above a quarter of the cap: never kept
    assert recycler.held <= 64 << 20
    recycler.clear()
    assert recycler.held == 0


def test_a_mask_freed_by_a_collection_inside_the_recyclers_lock_does_not_deadlock() -> None:
    """The finaliser runs wherever the last reference goes, a garbage collection included, and Python
    3.12 starts those at any bytecode: one that frees a mask while this thread holds the recycler's
    (non-reentrant) lock must not wait on it."""
    recycler = Recycler(64 << 20)
    cycle: list[object] = [recycler.empty(PHONE, np.uint8)]
    cycle.append(cycle)  # reachable only through a reference cycle: freed by the collector
    del cycle

    def collect_holding_the_lock() -> None:
        with recycler._lock:
            gc.collect()

    worker = threading.Thread(target=collect_holding_the_lock, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "deadlock: the finaliser waited on the lock its own thread held"
    assert recycler.held == PHONE[0] * PHONE[1]


def test_small_arrays_and_a_zero_cap_are_plain_numpy() -> None:
    small = Recycler(64 << 20).empty((16, 16), np.uint8)
    assert small.flags.owndata and small.nbytes < MIN_BYTES
    off = Recycler(0).empty(PHONE, np.uint8)
    assert off.flags.owndata
