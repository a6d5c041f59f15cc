"""The browser demo page (``server/rest/demo.py``) in real headless Chromium on the real B0 weights."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from server.rest.demo import FILES
from tests.server.browser import console_errors, page_state, start_chromium, wait_for
from tests.server.live import Served, image_bytes, metric_value, png_mask

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]
MAX_BODY_BYTES = 1024 * 1024
#: Set to a path (e.g. docs/images/demo.png) to keep the screenshot of the real photo there.
SCREENSHOT_ENV = "SEGFORMER_DEMO_SCREENSHOT"
#: The console line Chromium logs for each failed request the page then explains.
FAILED_REQUEST = "Failed to load resource: the server responded with a status of"
#: Until the multi-model API is served, the page asks for ``/v1/models``, gets 404 and uses ``/v1/model``.
NO_MODEL_LIST = "/v1/models - " + FAILED_REQUEST + " 404"
SEGMENT_ENDPOINTS = ("/v1/segment", "/v1/models/{name}/segment")


@pytest.fixture(scope="module")
def served(real_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
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
        assert abs(hx - x) <= 2 and abs(hy - y) <= 2  # whole CSS pixels of the pointer
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


def test_an_exif_rotated_photo_is_shown_upright_over_the_servers_mask(
    page: Any, served: Served, real_photos: list[Path], tmp_path: Path
) -> None:
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90° clockwise; the server segments the stored pixels
    Image.open(_photo(real_photos)).save(rotated, quality=95, exif=exif.tobytes())
    _upload(page, rotated)
    expected = _server_json(served, rotated)
    width, height = expected["width"], expected["height"]
    mask = png_mask(base64.b64decode(expected["mask_png_base64"]))
    shown = page.execute_script(
        "const c = document.getElementById('image-canvas'); return [c.width, c.height]"
    )
    assert shown == [height, width]
    colors = {c["id"]: c["color"] for c in httpx.get(f"{served.url}/v1/model", timeout=30).json()["classes"]}
    for sx, sy in ((height // 3, width // 4), (2 * height // 3, width // 2), (height // 2, 9 * width // 10)):
        class_id, _, (x, y) = _hover(page, sx, sy, height, width)
        assert abs(x - sy) <= 2 and abs(y - (height - 1 - sx)) <= 2  # whole CSS pixels of the pointer
        assert class_id == int(mask[y, x])
        overlay_rgb = page.execute_script(
            "return [...document.getElementById('overlay-canvas').getContext('2d')"
            f".getImageData({height - 1 - y}, {x}, 1, 1).data.slice(0, 3)]"
        )
        assert overlay_rgb == colors[class_id]


_DROP_OR_PASTE = """
const [kind, b64, name] = arguments;
const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const data = new DataTransfer();
data.items.add(new File([bytes], name, { type: "image/jpeg" }));
document.body.dataset.state = "sent";
if (kind === "drop") {
  const drop = new DragEvent("drop", { dataTransfer: data, bubbles: true });
  document.getElementById("stage").dispatchEvent(drop);
} else {
  document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true }));
}
"""


@pytest.mark.parametrize("kind", ["drop", "paste"])
def test_a_dropped_or_pasted_image_is_segmented(page: Any, kind: str, real_photos: list[Path]) -> None:
    photo = real_photos[1]
    page.execute_script(_DROP_OR_PASTE, kind, base64.b64encode(photo.read_bytes()).decode(), photo.name)
    wait_for(page, page_state("done"), what=f"the result of the {kind}")
    assert _legend(page)


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


def _send_and_hold(served: Served, image: bytes) -> socket.socket:
    """A native-mode segment request whose answer nobody reads; closing the socket cancels it."""
    head = (
        f"POST /v1/segment?mode=native HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
        f"Content-Length: {len(image)}\r\n\r\n"
    )
    assert served.port is not None
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=30)
    sock.sendall(head.encode() + image)
    return sock


def _wait_metric(served: Served, name: str, ok: Callable[[float], bool], **labels: str) -> None:
    end = time.monotonic() + 60
    while not ok(value := metric_value(served.metrics(), name, **labels)):
        assert time.monotonic() < end, f"{name} stayed at {value}"
        time.sleep(0.02)


def test_an_overloaded_server_is_reported_busy_with_its_retry_after(
    page: Any, served: Served, real_photos: list[Path]
) -> None:
    big = image_bytes(1024, 1024, "JPEG", seed=5)  # native mode at 1024x1024: seconds of inference on a CPU
    running = _send_and_hold(served, big)
    waiting = None
    try:
        _wait_metric(served, "segformer_in_flight_requests", lambda v: v >= 1, transport="rest")
        waiting = _send_and_hold(served, big)
        _wait_metric(served, "segformer_queue_depth", lambda v: v >= 1)  # the queue (size 1) is full
        _upload(page, _photo(real_photos), state="error")
        message = page.find_element("id", "error").text
        assert re.fullmatch(
            r"Server busy, retry in \d+ s \(the request queue is full, retry later\)\.", message
        )
    finally:
        running.close()
        if waiting is not None:
            waiting.close()
    # both dropped by the server (the running one's inference may still finish in its thread)
    _wait_metric(served, "segformer_in_flight_requests", lambda v: v == 0, transport="rest")
    _wait_metric(served, "segformer_queue_depth", lambda v: v == 0)
    _upload(page, _photo(real_photos))
    assert not page.find_element("id", "error").is_displayed()
    assert console_errors(page, allowed=(NO_MODEL_LIST, FAILED_REQUEST)) == []


def _segment_requests(served: Served) -> float:
    text = served.metrics()
    return sum(metric_value(text, "segformer_requests_total", endpoint=e) for e in SEGMENT_ENDPOINTS)


def test_camera_frames_flow_one_at_a_time_with_fps(page: Any, served: Served) -> None:
    before = _segment_requests(served)
    page.find_element("id", "camera").click()
    fps = page.find_element("id", "fps")
    most_in_flight = 0.0

    def frames_shown(driver: Any) -> bool:
        nonlocal most_in_flight
        in_flight = metric_value(served.metrics(), "segformer_in_flight_requests", transport="rest")
        most_in_flight = max(most_in_flight, in_flight)
        return int(fps.get_attribute("data-frames") or 0) >= 5

    wait_for(page, frames_shown, what="5 camera frames")
    assert re.search(r"camera: \d+\.\d fps · \d+ frames · \d+×\d+", fps.text), fps.text
    assert page.find_elements("css selector", "#legend tbody tr")
    page.find_element("id", "camera").click()
    assert page.find_element("id", "camera").text == "Start camera"
    shown = int(fps.get_attribute("data-frames"))
    time.sleep(1.0)  # a frame in flight when the camera stopped is answered (and not shown)
    sent = _segment_requests(served) - before
    assert most_in_flight <= 1
    assert sent in (shown, shown + 1)  # one frame at a time: each sent after the previous answer
    assert console_errors(page, allowed=(NO_MODEL_LIST,)) == []


def test_download_buttons_give_the_mask_and_the_overlay(
    page: Any, served: Served, real_photos: list[Path], tmp_path: Path
) -> None:
    page.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    photo = _photo(real_photos)
    _upload(page, photo)
    _set_opacity(page, 40)
    page.find_element("id", "download-mask").click()
    page.find_element("id", "download-overlay").click()
    mask_file, overlay_file = tmp_path / f"{photo.stem}-mask.png", tmp_path / f"{photo.stem}-overlay.png"
    wait_for(page, lambda d: mask_file.exists() and overlay_file.exists(), what="both downloads")

    expected = _server_json(served, photo)
    mask = png_mask(base64.b64decode(expected["mask_png_base64"]))
    np.testing.assert_array_equal(png_mask(mask_file.read_bytes()), mask)

    colors = {c["id"]: c["color"] for c in httpx.get(f"{served.url}/v1/model", timeout=30).json()["classes"]}
    palette = np.array([colors[i] for i in range(len(colors))], dtype=np.float64)
    image = np.asarray(Image.open(photo).convert("RGB"), dtype=np.float64)
    blend = 0.6 * image + 0.4 * palette[mask]
    overlay = np.asarray(Image.open(overlay_file).convert("RGB"), dtype=np.float64)
    assert overlay.shape == image.shape
    assert np.abs(overlay - blend).mean() < 3  # the browser's JPEG decoder is not PIL's


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
    for name, kind in [("", "text/html"), *FILES.items()]:
        response = httpx.get(f"{served.url}/demo/{name}", timeout=30)
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] == kind.split(";")[0]
        assert response.headers["content-security-policy"].startswith("default-src 'self';")
        assert "http://" not in response.text and "https://" not in response.text  # nothing from elsewhere
    missing = httpx.get(f"{served.url}/demo/..%2Fsettings.py", timeout=30)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def _interior_pixel(mask: np.ndarray, wanted: np.ndarray, margin: int = 4) -> tuple[int, int]:
    """(x, y) of a pixel with ``wanted`` set whose whole (2 * margin + 1)² neighbourhood has its class."""
    height, width = mask.shape
    for y, x in np.argwhere(wanted):
        if margin <= y < height - margin and margin <= x < width - margin:
            window = mask[y - margin : y + margin + 1, x - margin : x + margin + 1]
            if (window == mask[y, x]).all():
                return int(x), int(y)
    raise AssertionError("no interior pixel")


def test_masks_of_more_than_256_classes_are_read_exactly(
    browser: Any, real_photos: list[Path], tmp_path: Path
) -> None:
    from export.api import export_onnx

    graph = export_onnx("random:b0", tmp_path / "random_b0_300.onnx", num_labels=300, verify_graph=False)
    server = Served(tmp_path / "served", "--model", str(graph)).wait_ready()
    try:
        browser.get(f"{server.url}/demo/")
        wait_for(browser, page_state("idle"), what="the model list")
        photo = _photo(real_photos)
        _upload(browser, photo)
        expected = _server_json(server, photo)
        mask = png_mask(base64.b64decode(expected["mask_png_base64"]))
        assert mask.dtype == np.uint16 and mask.max() >= 256  # a 16-bit PNG, ids above one byte
        by_share = sorted(expected["classes"], key=lambda c: (-c["pixels"], c["id"]))
        assert [row[0] for row in _legend(browser)] == [c["id"] for c in by_share]
        x, y = _interior_pixel(mask, mask >= 256)
        class_id, _, (hx, hy) = _hover(browser, x, y, expected["width"], expected["height"])
        assert class_id == int(mask[hy, hx]) == int(mask[y, x]) >= 256
    finally:
        assert server.stop() == 0
