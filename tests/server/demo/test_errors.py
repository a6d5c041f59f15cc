"""The demo page shows the server's errors as sentences and stays usable: corrupt, too large, busy."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.demo.browser import console_errors
from tests.server.demo.conftest import MAX_BODY_BYTES
from tests.server.demo.page import FAILED_REQUEST, legend, photo_to_show, upload
from tests.server.live import Served, image_bytes, metric_value

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]


def test_corrupt_and_oversized_files_show_the_error_and_the_page_recovers(
    page: Any, demo_server: Served, real_photos: list[Path], tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(photo_to_show(real_photos).read_bytes()[:3000])  # a truncated JPEG
    answer = httpx.post(
        f"{demo_server.url}/v1/segment", content=corrupt.read_bytes(), headers={"Content-Type": "image/jpeg"}
    )
    assert answer.status_code == 400
    upload(page, corrupt, expect="error")
    error = page.find_element("id", "error")
    assert error.is_displayed()
    assert error.text == f"The server could not use this image: {answer.json()['detail']}"

    big = tmp_path / "big.png"
    big.write_bytes(image_bytes(1200, 1200, seed=3, compress_level=0))
    assert big.stat().st_size > MAX_BODY_BYTES
    upload(page, big, expect="error")
    assert page.find_element("id", "error").text.startswith("The image is too large:")

    upload(page, photo_to_show(real_photos))
    assert not page.find_element("id", "error").is_displayed()
    assert legend(page)[0][1] == "sky"
    assert console_errors(page, allowed=(FAILED_REQUEST,)) == []


def _flood(served: Served, image: bytes, stop: threading.Event) -> None:
    """One client sending native-mode requests back to back until ``stop`` (a 503 retries at once)."""
    with httpx.Client(base_url=served.url, timeout=120) as client:
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                client.post("/v1/segment?mode=native", content=image, headers={"Content-Type": "image/jpeg"})


def _wait_metric(served: Served, name: str, ok: Callable[[float], bool], **labels: str) -> None:
    end = time.monotonic() + 60
    while not ok(value := metric_value(served.metrics(), name, **labels)):
        assert time.monotonic() < end, f"{name} stayed at {value}"
        time.sleep(0.02)


def test_an_overloaded_server_is_reported_busy_with_its_retry_after(
    page: Any, demo_server: Served, real_photos: list[Path]
) -> None:
    # three clients keep the one session and the queue (size 1) full: one request runs, one waits, the
    # others are refused and come back at once, so the page's upload finds the queue full (two held
    # requests, as before, left a gap of one inference: once the numpy head made it ~0.3 s, the page
    # could upload just after the waiting request had moved on)
    big = image_bytes(1024, 1024, "JPEG", seed=5)
    stop = threading.Event()
    clients = [threading.Thread(target=_flood, args=(demo_server, big, stop)) for _ in range(3)]
    for client in clients:
        client.start()
    try:
        _wait_metric(demo_server, "segformer_queue_depth", lambda v: v >= 1)  # the queue (size 1) is full
        upload(page, photo_to_show(real_photos), expect="error")
        message = page.find_element("id", "error").text
        assert re.fullmatch(
            r"Server busy, retry in \d+ s \(the request queue is full, retry later\)\.", message
        )
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=120)
    # the clients have stopped: the server is idle again and serves the page
    _wait_metric(demo_server, "segformer_in_flight_requests", lambda v: v == 0, transport="rest")
    _wait_metric(demo_server, "segformer_queue_depth", lambda v: v == 0)
    upload(page, photo_to_show(real_photos))
    assert not page.find_element("id", "error").is_displayed()
    assert console_errors(page, allowed=(FAILED_REQUEST,)) == []
