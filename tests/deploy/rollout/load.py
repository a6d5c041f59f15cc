"""The traffic during the rollout: REST clients in a loop and one long gRPC stream, all through the LB.

Every request and frame carries an image whose size depends on its number, and every answer is checked
against it, so an answer given to the wrong request (or twice, or never) shows up as a failure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

from client import SegformerClient
from tests.server.live import image_bytes

PNG = {"Content-Type": "image/png"}


def _size(number: int) -> tuple[int, int]:
    return 24 + 8 * (number % 5), 32 + 8 * (number % 7)  # height, width


@dataclass
class Tally:
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, failure: str | None) -> None:
        with self.lock:
            if failure is None:
                self.ok += 1
            else:
                self.failures.append(failure)


def _check(response: httpx.Response, size: tuple[int, int]) -> str | None:
    """What is wrong with one REST answer (None: a 200 with the request's own size)."""
    if response.status_code != 200:
        return f"{response.status_code} {response.text[:200]}"
    body = response.json()
    got = (body.get("height"), body.get("width"))
    return None if got == size else f"answer {got} for {size}"


def rest_client(url: str, client_id: int, stop: threading.Event, tally: Tally) -> None:
    """POST /v1/segment?format=json in a loop until ``stop``; each answer's size must match."""
    params = {"format": "json", "mode": "native"}
    with httpx.Client(base_url=url, timeout=60) as http:
        number = client_id
        while not stop.is_set():
            size = _size(number)
            body = image_bytes(*size, seed=number)
            try:
                response = http.post("/v1/segment", content=body, params=params, headers=PNG)
            except httpx.HTTPError as exc:
                problem: str | None = f"{type(exc).__name__}: {exc}"
            else:
                problem = _check(response, size)
            tally.record(None if problem is None else f"rest client {client_id} #{number}: {problem}")
            number += 100


class Stream:
    """One ``StreamSegment`` through the LB for the whole rollout (the client resends on UNAVAILABLE)."""

    def __init__(self, address: str, stop: threading.Event, interval_s: float = 0.02) -> None:
        self.address, self.stop, self.interval_s = address, stop, interval_s
        self.sent = 0
        self.answered: list[int] = []
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._run, name="grpc-stream", daemon=True)

    def _frames(self) -> Iterator[bytes]:
        while not self.stop.is_set():
            height, width = _size(self.sent)
            yield image_bytes(height, width, seed=10_000 + self.sent)
            self.sent += 1
            time.sleep(self.interval_s)

    def _run(self) -> None:
        try:
            with SegformerClient(f"grpc://{self.address}", timeout=None) as client:
                for seg in client.stream(self._frames(), mode="native", reconnects=5):
                    expected = len(self.answered)
                    if seg.error is not None:
                        self.failures.append(f"frame {seg.frame_id}: {seg.error}")
                    elif seg.frame_id != expected:
                        self.failures.append(f"frame {seg.frame_id} answered, expected {expected}")
                    elif (seg.height, seg.width) != _size(seg.frame_id):
                        self.failures.append(f"frame {seg.frame_id}: {seg.height}x{seg.width}")
                    self.answered.append(seg.frame_id)
        except Exception as exc:  # the stream itself failed: the harness reports it
            self.failures.append(f"stream ended: {type(exc).__name__}: {exc}")
