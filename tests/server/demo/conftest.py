"""Fixtures for the demo page tests: one server on the real B0 weights and one Chromium per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.demo.browser import page_state, start_chromium, wait_for
from tests.server.live import Served

#: The demo server's body limit, small so that an oversized upload is cheap.
MAX_BODY_BYTES = 1024 * 1024


@pytest.fixture(scope="session")
def demo_server(real_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(
        tmp_path_factory.mktemp("demo"),
        "--model", str(real_b0_onnx),
        "--max-body-bytes", str(MAX_BODY_BYTES),
        "--sessions", "1",
        "--max-queue-size", "1",  # one request running and one waiting fill it: the next one gets 503
    )  # fmt: skip
    try:
        yield server.wait_ready()
    finally:
        code = server.stop()
        assert code == 0, server.log_tail()
        assert server.torch_modules() == []


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser: Any, demo_server: Served) -> Any:
    """The demo page, freshly loaded from ``/`` (which redirects to ``/demo/``), models listed."""
    browser.get(f"{demo_server.url}/")
    wait_for(browser, page_state("idle"), what="the model list")
    assert browser.current_url == f"{demo_server.url}/demo/"
    return browser
