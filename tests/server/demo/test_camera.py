"""Camera mode with Chromium's fake capture device: frames flow one at a time and fps is shown."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.server.demo.browser import console_errors, wait_for
from tests.server.live import Served, metric_value

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]
SEGMENT_ENDPOINTS = ("/v1/segment", "/v1/models/{name}/segment")


def _segment_requests(served: Served) -> float:
    text = served.metrics()
    return sum(metric_value(text, "segformer_requests_total", endpoint=e) for e in SEGMENT_ENDPOINTS)


def test_camera_frames_flow_one_at_a_time_with_fps(page: Any, demo_server: Served) -> None:
    before = _segment_requests(demo_server)
    page.find_element("id", "camera").click()
    fps = page.find_element("id", "fps")
    most_in_flight = 0.0

    def frames_shown(driver: Any) -> bool:
        nonlocal most_in_flight
        in_flight = metric_value(demo_server.metrics(), "segformer_in_flight_requests", transport="rest")
        most_in_flight = max(most_in_flight, in_flight)
        return int(fps.get_attribute("data-frames") or 0) >= 5

    wait_for(page, frames_shown, what="5 camera frames")
    assert re.search(r"camera: \d+\.\d fps · \d+ frames · \d+×\d+", fps.text), fps.text
    assert page.find_elements("css selector", "#legend tbody tr")
    page.find_element("id", "camera").click()
    assert page.find_element("id", "camera").text == "Start camera"
    shown = int(fps.get_attribute("data-frames"))
    time.sleep(1.0)  # a frame in flight when the camera stopped is answered (and not shown)
    sent = _segment_requests(demo_server) - before
    assert most_in_flight <= 1
    assert sent in (shown, shown + 1)  # one frame at a time: each sent after the previous answer
    assert console_errors(page) == []
