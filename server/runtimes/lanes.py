"""Lending a pool's sessions to one batch at a time (lanes side by side, or a solo session alone), and
running a batch on one in the pool's threads.

Both pools (``SessionPool`` on ONNX Runtime, ``OpenVinoPool``) keep the same policy and run batches
the same way, so both are written once here; a pool adds how one session runs a batch (``_infer``).
The policy: ``acquire(alone=True)`` (a lone request on an idle pool) gets the solo session when there
is one, every core for one request's latency; otherwise a free lane, waiting while the solo session
runs (it already uses every core). Under load the lanes (a share of the cores each) keep all cores busy
without the synchronisation cost of one wide thread pool.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Generic, TypeVar

import numpy as np

if TYPE_CHECKING:
    from contract.spec import ModelSpec
    from server.head import MaskHead

Session = TypeVar("Session")


class Lanes(Generic[Session]):
    """The lending state of a pool and its batch runs (a base class: a pool sets ``spec`` and adds
    ``_infer``, one blocking run of a batch on one session)."""

    spec: ModelSpec
    head: MaskHead

    def __init__(
        self, lanes: list[Session], solo: Session | None, thread_prefix: str, streams: int | None = None
    ) -> None:
        self.lanes, self.solo = lanes, solo
        self.sessions = lanes + ([solo] if solo is not None else [])
        self._streams = streams or len(lanes)
        self._free_lanes = list(lanes)
        self._solo_busy = False
        self._released = asyncio.Event()
        self.idle_since = time.monotonic()  # when the last busy session was given back
        self._executor = ThreadPoolExecutor(max_workers=len(self.sessions), thread_name_prefix=thread_prefix)

    @property
    def size(self) -> int:
        """Batches that run side by side (the solo session replaces them, it never joins them)."""
        return self._streams

    @property
    def busy(self) -> int:
        """Sessions lent out now."""
        return len(self.lanes) - len(self._free_lanes) + self._solo_busy

    async def acquire(self, alone: bool = False) -> Session:
        """Borrow a session (give it back with ``release``); see the module doc for ``alone``."""
        while True:
            if alone and self.solo is not None and self.busy == 0:
                self._solo_busy = True
                return self.solo
            if self._free_lanes and not self._solo_busy:
                return self._free_lanes.pop()
            self._released.clear()
            await self._released.wait()

    def release(self, session: Session) -> None:
        if session is self.solo:
            self._solo_busy = False
        else:
            self._free_lanes.append(session)
        if self.busy == 0:
            self.idle_since = time.monotonic()
        self._released.set()

    def kind(self, session: Session) -> str:
        return "solo" if session is self.solo else "lane"

    def _infer(self, session: Session, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    async def run(self, session: Session, images: np.ndarray) -> np.ndarray:
        """float32 ``logits`` ``[N, C, h, w]`` of a uint8 ``[N, H, W, 3]`` batch (the batched stage), in
        the pool's thread executor (the runtimes release the GIL: lanes run side by side);
        ``head.run`` turns each image's logits into its mask."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._infer, session, images)

    def warm_up(self, runs: int) -> float:
        """Run every session ``runs`` times at the inference size (blocking); seconds."""
        start = time.perf_counter()
        height, width = self.spec.inference_size
        image = np.full((1, height, width, 3), 128, dtype=np.uint8)
        for session in self.sessions:
            for _ in range(runs):
                self._infer(session, image)
        return time.perf_counter() - start

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.head.close()  # its band threads
