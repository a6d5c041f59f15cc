"""A live source never falls behind: a capture thread keeps only the newest frame and counts the rest.

``Newest`` wraps any iterator of frames (a camera, an RTSP stream, a file replayed at its frame rate):
its thread pulls frames as fast as they come; the pipeline takes one only when it has a free slot and
then gets the newest, never a backlog. Frames overwritten before anyone took them are ``skipped``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator

from client.frames import Frame


class Newest:
    """Iterate to take the newest frame not taken yet (blocks until one comes); ends with the source."""

    def __init__(self, frames: Iterable[Frame]) -> None:
        self._frames = iter(frames)
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._ended = False
        self._stop = threading.Event()
        self.skipped = 0
        self.captured = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._capture, name="segformer-capture", daemon=True)
        self._thread.start()

    def _capture(self) -> None:
        try:
            for frame in self._frames:
                with self._cond:
                    if self._latest is not None:
                        self.skipped += 1
                    self._latest = frame
                    self.captured += 1
                    self._cond.notify()
                if self._stop.is_set():
                    break
        except Exception as exc:  # a broken stream ends the source; the CLI reports it
            self.error = exc
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def __iter__(self) -> Iterator[Frame]:
        while True:
            with self._cond:
                while self._latest is None and not self._ended:
                    self._cond.wait()
                frame, self._latest = self._latest, None
            if frame is None:
                return
            yield frame

    def close(self, timeout: float = 5.0) -> None:
        """Stop capturing (the thread ends at its source's next frame)."""
        self._stop.set()
        self._thread.join(timeout)


def paced(frames: Iterable[Frame]) -> Iterator[Frame]:
    """A file replayed in real time: each frame no sooner than its timestamp after the first."""
    start: float | None = None
    first = 0.0
    for frame in frames:
        now = time.perf_counter()
        if start is None:
            start, first = now, frame.seconds
        delay = start + frame.seconds - first - now
        if delay > 0:
            time.sleep(delay)
        frame.captured = time.perf_counter()
        yield frame
