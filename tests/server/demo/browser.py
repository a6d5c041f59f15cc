"""Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by selenium, for the demo page.

Camera tests use Chromium's fake capture device (a generated test pattern) and skip the permission prompt.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1400, 1000)
ARGS = (
    "--headless=new",
    "--no-sandbox",  # CI runs as root
    "--disable-dev-shm-usage",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
)


def require_chromium() -> None:
    """Skip without Chromium and its driver; in CI (``CI=true``) fail instead: .ci/run installs them."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    if not missing:
        return
    reason = f"needs apt packages chromium and chromium-driver; missing {', '.join(missing)}"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def start_chromium() -> Any:
    """A headless Chromium session (a ``selenium.webdriver.Chrome``) on the system browser."""
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in ARGS:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    return driver


def wait_for(driver: Any, condition: Callable[[Any], Any], timeout: float = 60, what: str = "") -> Any:
    """``condition(driver)`` once truthy; on timeout, fail with the page's state and console."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
    except TimeoutException:
        state = driver.execute_script("return document.body.dataset.state")
        error = driver.execute_script("return document.getElementById('error').textContent")
        console = "\n".join(e["message"] for e in driver.get_log("browser"))
        pytest.fail(f"timed out waiting for {what}: state={state!r} error={error!r}\nconsole:\n{console}")


def page_state(expected: str) -> Callable[[Any], bool]:
    return lambda d: d.execute_script("return document.body.dataset.state") == expected


def console_errors(driver: Any, allowed: tuple[str, ...] = ()) -> list[str]:
    """SEVERE console entries not matching any of ``allowed`` (substrings)."""
    entries = driver.get_log("browser")
    return [
        e["message"]
        for e in entries
        if e["level"] == "SEVERE" and not any(a in e["message"] for a in allowed)
    ]
