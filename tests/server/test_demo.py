"""The browser demo page (``server/rest/demo.py``) in real headless Chromium on the real B0 weights."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.server.browser import console_errors, page_state, start_chromium, wait_for
from tests.server.live import Served, image_bytes, png_mask

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]
MAX_BODY_BYTES = 1024 * 1024
#: Set to a path (e.g. docs/images/demo.png) to keep the screenshot of the real photo there.
SCREENSHOT_ENV = "SEGFORMER_DEMO_SCREENSHOT"
#: The console line Chromium logs for each failed request the page then explains.
FAILED_REQUEST = "Failed to load resource: the server responded with a status of"
#: Until the multi-model API is served, the page asks for ``/v1/models``, gets 404 and uses ``/v1/model``.
NO_MODEL_LIST = "/v1/models - " + FAILED_REQUEST + " 404"


@pytest.fixture(scope="module")
def served(real_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(
        tmp_path_factory.mktemp("demo"),
        "--model", str(real_b0_onnx),
        "--max-body-bytes", str(MAX_BODY_BYTES),
    )  # fmt: skip
    try:
        yield server.wait_ready()
    finally:
        code = server.stop()
        assert code == 0, server.log_tail()
        assert server.torch_modules() == []


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser: Any, served: Served) -> Any:
    """The demo page, freshly loaded from ``/`` (which redirects to ``/demo/``), models listed."""
    browser.get(f"{served.url}/")
    wait_for(browser, page_state("idle"), what="the model list")
    assert browser.current_url == f"{served.url}/demo/"
    return browser


def _photo(real_photos: list[Path]) -> Path:
    photo = real_photos[0]
    assert photo.name == "ADE_val_00000001.jpg"  # BSD-3 sample data: fine to show in a screenshot
    return photo


def _upload(page: Any, path: Path, state: str = "done") -> None:
    page.execute_script("document.body.dataset.state = 'sent'")
    page.find_element("id", "file").send_keys(str(path))
    wait_for(page, lambda d: d.execute_script("return document.body.dataset.state") in ("done", "error"))
    assert page.execute_script("return document.body.dataset.state") == state, _error_text(page)


def _error_text(page: Any) -> str:
    return page.execute_script("return document.getElementById('error').textContent")


def _legend(page: Any) -> list[tuple[int, str, str]]:
    rows = page.find_elements("css selector", "#legend tbody tr")
    return [
        (int(r.get_attribute("data-id")), *(td.text for td in r.find_elements("css selector", "td")[1:3]))
        for r in rows
    ]


def _server_json(served: Served, photo: Path) -> dict[str, Any]:
    response = httpx.post(
        f"{served.url}/v1/segment?format=json",
        content=photo.read_bytes(),
        headers={"Content-Type": "image/jpeg"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()


def _hover(page: Any, x: int, y: int, width: int, height: int) -> tuple[int, str, tuple[int, int]]:
    """Move the mouse over image pixel (x, y); the readout's class id, label and pixel."""
    from selenium.webdriver.common.action_chains import ActionChains

    overlay = page.find_element("id", "overlay-canvas")
    rect = overlay.rect
    dx = (x + 0.5) * rect["width"] / width - rect["width"] / 2
    dy = (y + 0.5) * rect["height"] / height - rect["height"] / 2
    ActionChains(page).move_to_element_with_offset(overlay, round(dx), round(dy)).perform()
    hover = page.find_element("id", "hover")
    wait_for(page, lambda d: hover.get_attribute("data-id") is not None, what="the hover readout")
    match = re.search(r"at \((\d+), (\d+)\)", hover.text)
    assert match, hover.text
    label = page.find_element("css selector", "#hover .hover-label").text
    return int(hover.get_attribute("data-id")), label, (int(match.group(1)), int(match.group(2)))


def _set_opacity(page: Any, percent: int) -> None:
    slider = "document.getElementById('opacity')"
    page.execute_script(f"{slider}.value = {percent}; {slider}.dispatchEvent(new Event('input'))")


def _not_blank(png: Path) -> float:
    pixels = np.asarray(Image.open(png).convert("RGB"), dtype=np.float64)
    return float(pixels.std())


def test_real_photo_overlay_legend_hover_and_screenshot(
    page: Any, served: Served, real_photos: list[Path], tmp_path: Path
) -> None:
    photo = _photo(real_photos)
    _upload(page, photo)
    expected = _server_json(served, photo)

    # the legend: every class present, sorted by share, the same as the API's JSON for this photo
    legend = _legend(page)
    by_share = sorted(expected["classes"], key=lambda c: (-c["pixels"], c["id"]))
    assert [row[0] for row in legend] == [c["id"] for c in by_share]
    assert [row[1] for row in legend[:5]] == [c["label"] for c in by_share[:5]]
    top_share = float(legend[0][2].rstrip(" %"))
    assert top_share == pytest.approx(100 * by_share[0]["fraction"], abs=0.06)

    # the overlay: decoded in the page, one opaque palette colour per pixel, at the image's size
    width, height = expected["width"], expected["height"]
    opaque = page.execute_script(
        "const c = document.getElementById('overlay-canvas');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] === 255;"
        "return [c.width, c.height, n];"
    )
    assert opaque == [width, height, width * height]

    # hover: the class under the cursor is the mask's class at that pixel
    mask = png_mask(base64.b64decode(expected["mask_png_base64"]))
    labels = {c["id"]: c["label"] for c in expected["classes"]}
    for x, y in ((width // 2, height // 4), (width // 5, 3 * height // 4), (4 * width // 5, height // 2)):
        class_id, label, (hx, hy) = _hover(page, x, y, width, height)
        assert abs(hx - x) <= 1 and abs(hy - y) <= 1  # whole CSS pixels of the pointer
        assert class_id == int(mask[hy, hx]) and label == labels[class_id]

    # the opacity slider acts on the overlay at once; stage timings are listed
    _set_opacity(page, 70)
    assert page.find_element("id", "overlay-canvas").value_of_css_property("opacity") == "0.7"
    timings = page.find_element("id", "timings").text
    assert all(stage in timings for stage in ("decode", "inference", "total", "round trip"))
    assert not page.find_element("id", "download-mask").get_attribute("disabled")

    screenshot = tmp_path / "demo.png"
    _set_opacity(page, 55)
    _hover(page, 11 * width // 20, 11 * height // 20, width, height)  # on the house
    assert page.save_screenshot(str(screenshot))
    assert _not_blank(screenshot) > 20
    stage = page.find_element("id", "image-canvas").screenshot_as_png
    assert np.asarray(Image.open(io.BytesIO(stage)).convert("RGB"), dtype=np.float64).std() > 20
    if keep := os.environ.get(SCREENSHOT_ENV):
        shutil.copyfile(screenshot, keep)
    assert console_errors(page, allowed=(NO_MODEL_LIST,)) == []


def test_corrupt_and_oversized_files_show_the_error_and_the_page_recovers(
    page: Any, served: Served, real_photos: list[Path], tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(_photo(real_photos).read_bytes()[:3000])  # a truncated JPEG
    answer = httpx.post(
        f"{served.url}/v1/segment", content=corrupt.read_bytes(), headers={"Content-Type": "image/jpeg"}
    )
    assert answer.status_code == 400
    _upload(page, corrupt, state="error")
    error = page.find_element("id", "error")
    assert error.is_displayed()
    assert error.text == f"The server could not use this image: {answer.json()['detail']}"

    big = tmp_path / "big.png"
    big.write_bytes(image_bytes(1200, 1200, seed=3, compress_level=0))
    assert big.stat().st_size > MAX_BODY_BYTES
    _upload(page, big, state="error")
    assert page.find_element("id", "error").text.startswith("The image is too large:")

    _upload(page, _photo(real_photos))
    assert not page.find_element("id", "error").is_displayed()
    assert _legend(page)[0][1] == "sky"
    assert console_errors(page, allowed=(NO_MODEL_LIST, FAILED_REQUEST)) == []


def test_camera_frames_flow_one_at_a_time_with_fps(page: Any) -> None:
    page.find_element("id", "camera").click()
    fps = page.find_element("id", "fps")
    wait_for(page, lambda d: int(fps.get_attribute("data-frames") or 0) >= 3, what="3 camera frames")
    assert re.search(r"camera: \d+\.\d fps · \d+ frames · \d+×\d+", fps.text), fps.text
    assert page.find_elements("css selector", "#legend tbody tr")
    page.find_element("id", "camera").click()
    assert page.find_element("id", "camera").text == "Start camera"
    assert console_errors(page, allowed=(NO_MODEL_LIST,)) == []


def test_no_demo_leaves_the_page_out(real_b0_onnx: Path, tmp_path: Path) -> None:
    server = Served(tmp_path, "--model", str(real_b0_onnx), "--no-demo").wait_listening()
    try:
        for path in ("/", "/demo/", "/demo/demo.js"):
            response = httpx.get(f"{server.url}{path}", timeout=30)
            assert response.status_code == 404 and response.json()["error"] == "not_found"
    finally:
        assert server.stop() == 0


def test_page_files_are_served_with_a_same_origin_policy(served: Served) -> None:
    root = httpx.get(f"{served.url}/", timeout=30)
    assert root.status_code == 307 and root.headers["location"] == "demo/"
    for name, kind in (("", "text/html"), ("demo.js", "text/javascript"), ("demo.css", "text/css")):
        response = httpx.get(f"{served.url}/demo/{name}", timeout=30)
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
        assert response.headers["content-security-policy"].startswith("default-src 'self';")
        assert "http://" not in response.text and "https://" not in response.text  # nothing from elsewhere
    missing = httpx.get(f"{served.url}/demo/..%2Fsettings.py", timeout=30)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
