"""Lending a pool's sessions to one batch at a time: lanes side by side, or a solo session alone.

Both pools (``SessionPool`` on ONNX Runtime, ``OpenVinoPool``) keep the same policy, so it is written
once here: ``acquire(alone=True)`` (a lone request on an idle pool) gets the solo session when there is
one, every core for one request's latency; otherwise a free lane, waiting while the solo session runs
(it already uses every core). Under load the lanes (a share of the cores each) keep all cores busy
without the synchronisation cost of one wide thread pool.
"""

from __future__ import annotations

import asyncio
import time
from typing import Generic, TypeVar

Session = TypeVar("Session")


class Lanes(Generic[Session]):
    """The lending state of a pool (a base class: the pools add ``run``, ``warm_up`` and ``close``)."""

    def __init__(self, lanes: list[Session], solo: Session | None, streams: int | None = None) -> None:
        self.lanes, self.solo = lanes, solo
        self.sessions = lanes + ([solo] if solo is not None else [])
        self._streams = streams or len(lanes)
        self._free_lanes = list(lanes)
        self._solo_busy = False
        self._released = asyncio.Event()
        self.idle_since = time.monotonic()  # when the last busy session was given back

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
