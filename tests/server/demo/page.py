"""Reading and driving the demo page in Chromium, and what the API answers for comparison."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from tests.server.demo.browser import wait_for
from tests.server.live import Served

#: The console line Chromium logs for each failed request the page then explains.
FAILED_REQUEST = "Failed to load resource: the server responded with a status of"


def photo_to_show(real_photos: list[Path]) -> Path:
    photo = real_photos[0]
    assert photo.name == "ADE_val_00000001.jpg"  # BSD-3 sample data: fine to show in a screenshot
    return photo


def state(page: Any) -> str:
    return page.execute_script("return document.body.dataset.state")


def upload(page: Any, path: Path, expect: str = "done") -> None:
    """Choose ``path`` in the file input and wait for the page to show the result (or an error)."""
    page.execute_script("document.body.dataset.state = 'sent'")
    page.find_element("id", "file").send_keys(str(path))
    wait_for(page, lambda d: state(d) in ("done", "error"), what=f"the answer for {path.name}")
    assert state(page) == expect, error_text(page)


def error_text(page: Any) -> str:
    return page.execute_script("return document.getElementById('error').textContent")


def legend(page: Any) -> list[tuple[int, str, str]]:
    """The legend's rows, top down: (class id, label, share as shown)."""
    rows = page.find_elements("css selector", "#legend tbody tr")
    return [
        (int(r.get_attribute("data-id")), *(td.text for td in r.find_elements("css selector", "td")[1:3]))
        for r in rows
    ]


def by_share(classes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(classes, key=lambda c: (-c["pixels"], c["id"]))


def hover(page: Any, x: int, y: int, width: int, height: int) -> tuple[int, str, tuple[int, int]]:
    """Move the mouse over pixel (x, y) of the shown ``width`` x ``height`` image; the readout's class
    id, label and pixel (in the server's mask)."""
    from selenium.webdriver.common.action_chains import ActionChains

    overlay = page.find_element("id", "overlay-canvas")
    rect = overlay.rect
    dx = (x + 0.5) * rect["width"] / width - rect["width"] / 2
    dy = (y + 0.5) * rect["height"] / height - rect["height"] / 2
    ActionChains(page).move_to_element_with_offset(overlay, round(dx), round(dy)).perform()
    readout = page.find_element("id", "hover")
    wait_for(page, lambda d: readout.get_attribute("data-id") is not None, what="the hover readout")
    match = re.search(r"at \((\d+), (\d+)\)", readout.text)
    assert match, readout.text
    label = page.find_element("css selector", "#hover .hover-label").text
    return int(readout.get_attribute("data-id")), label, (int(match.group(1)), int(match.group(2)))


def set_opacity(page: Any, percent: int) -> None:
    slider = "document.getElementById('opacity')"
    page.execute_script(f"{slider}.value = {percent}; {slider}.dispatchEvent(new Event('input'))")


def segment_json(served: Served, photo: Path, model: str | None = None) -> dict[str, Any]:
    """``POST /v1/segment?format=json`` (or ``/v1/models/{model}/segment``) for the file's bytes."""
    path = "/v1/segment" if model is None else f"/v1/models/{model}/segment"
    response = httpx.post(
        f"{served.url}{path}?format=json",
        content=photo.read_bytes(),
        headers={"Content-Type": "image/jpeg"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()


def class_colors(served: Served) -> dict[int, list[int]]:
    classes = httpx.get(f"{served.url}/v1/model", timeout=30).json()["classes"]
    return {c["id"]: c["color"] for c in classes}
