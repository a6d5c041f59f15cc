"""The demo page on the real B0 weights: overlay, legend, hover, opacity, EXIF, drop and paste, downloads."""

from __future__ import annotations

import base64
import io
import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.server.demo.browser import console_errors, page_state, wait_for
from tests.server.demo.page import (
    by_share,
    class_colors,
    hover,
    legend,
    photo_to_show,
    segment_json,
    set_opacity,
    upload,
)
from tests.server.live import Served, png_mask

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]
#: Set to a path (e.g. docs/images/demo.png) to keep the screenshot of the real photo there.
SCREENSHOT_ENV = "SEGFORMER_DEMO_SCREENSHOT"


def _std(png: bytes) -> float:
    return float(np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64).std())


def test_real_photo_overlay_legend_hover_and_screenshot(
    page: Any, demo_server: Served, real_photos: list[Path], tmp_path: Path
) -> None:
    photo = photo_to_show(real_photos)
    upload(page, photo)
    expected = segment_json(demo_server, photo)

    # the legend: every class present, sorted by share, the same as the API's JSON for this photo
    rows, classes = legend(page), by_share(expected["classes"])
    assert [row[0] for row in rows] == [c["id"] for c in classes]
    assert [row[1] for row in rows[:5]] == [c["label"] for c in classes[:5]]
    assert float(rows[0][2].rstrip(" %")) == pytest.approx(100 * classes[0]["fraction"], abs=0.06)

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
        class_id, label, (hx, hy) = hover(page, x, y, width, height)
        assert abs(hx - x) <= 2 and abs(hy - y) <= 2  # whole CSS pixels of the pointer
        assert class_id == int(mask[hy, hx]) and label == labels[class_id]

    # the opacity slider acts on the overlay at once; stage timings are listed
    set_opacity(page, 70)
    assert page.find_element("id", "overlay-canvas").value_of_css_property("opacity") == "0.7"
    timings = page.find_element("id", "timings").text
    assert all(stage in timings for stage in ("decode", "inference", "total", "round trip"))
    assert not page.find_element("id", "download-mask").get_attribute("disabled")

    screenshot = tmp_path / "demo.png"
    set_opacity(page, 55)
    hover(page, 11 * width // 20, 11 * height // 20, width, height)  # on the house
    assert page.save_screenshot(str(screenshot))
    assert _std(screenshot.read_bytes()) > 20
    assert _std(page.find_element("id", "image-canvas").screenshot_as_png) > 20
    if keep := os.environ.get(SCREENSHOT_ENV):
        shutil.copyfile(screenshot, keep)
    assert console_errors(page) == []


def test_an_exif_rotated_photo_is_shown_upright_over_the_servers_mask(
    page: Any, demo_server: Served, real_photos: list[Path], tmp_path: Path
) -> None:
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90° clockwise; the server segments the stored pixels
    Image.open(photo_to_show(real_photos)).save(rotated, quality=95, exif=exif.tobytes())
    upload(page, rotated)
    expected = segment_json(demo_server, rotated)
    width, height = expected["width"], expected["height"]
    mask = png_mask(base64.b64decode(expected["mask_png_base64"]))
    shown = page.execute_script(
        "const c = document.getElementById('image-canvas'); return [c.width, c.height]"
    )
    assert shown == [height, width]
    colors = class_colors(demo_server)
    for sx, sy in ((height // 3, width // 4), (2 * height // 3, width // 2), (height // 2, 9 * width // 10)):
        class_id, _, (x, y) = hover(page, sx, sy, height, width)
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
def test_a_dropped_or_pasted_image_is_segmented(
    page: Any, kind: str, demo_server: Served, real_photos: list[Path]
) -> None:
    photo = real_photos[1]
    page.execute_script(_DROP_OR_PASTE, kind, base64.b64encode(photo.read_bytes()).decode(), photo.name)
    wait_for(page, page_state("done"), what=f"the result of the {kind}")
    expected = by_share(segment_json(demo_server, photo)["classes"])
    assert [row[0] for row in legend(page)] == [c["id"] for c in expected]


def test_download_buttons_give_the_mask_and_the_overlay(
    page: Any, demo_server: Served, real_photos: list[Path], tmp_path: Path
) -> None:
    page.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    photo = photo_to_show(real_photos)
    upload(page, photo)
    set_opacity(page, 40)
    page.find_element("id", "download-mask").click()
    page.find_element("id", "download-overlay").click()
    mask_file, overlay_file = tmp_path / f"{photo.stem}-mask.png", tmp_path / f"{photo.stem}-overlay.png"
    wait_for(page, lambda d: mask_file.exists() and overlay_file.exists(), what="both downloads")

    mask = png_mask(base64.b64decode(segment_json(demo_server, photo)["mask_png_base64"]))
    np.testing.assert_array_equal(png_mask(mask_file.read_bytes()), mask)

    colors = class_colors(demo_server)
    palette = np.array([colors[i] for i in range(len(colors))], dtype=np.float64)
    image = np.asarray(Image.open(photo).convert("RGB"), dtype=np.float64)
    blend = 0.6 * image + 0.4 * palette[mask]
    overlay = np.asarray(Image.open(overlay_file).convert("RGB"), dtype=np.float64)
    assert overlay.shape == image.shape
    assert np.abs(overlay - blend).mean() < 3  # the browser's JPEG decoder is not PIL's


def test_the_mode_picker_segments_at_native_resolution(
    page: Any, demo_server: Served, real_photos: list[Path]
) -> None:
    from selenium.webdriver.support.select import Select

    photo = real_photos[2]
    upload(page, photo)
    page.execute_script("document.body.dataset.state = 'sent'")
    Select(page.find_element("id", "mode")).select_by_value("native")  # the same image again, natively
    wait_for(page, page_state("done"), what="the native-mode answer")
    response = httpx.post(
        f"{demo_server.url}/v1/segment?format=json&mode=native",
        content=photo.read_bytes(),
        headers={"Content-Type": "image/jpeg"},
        timeout=60,
    )
    expected = by_share(response.json()["classes"])
    assert [row[0] for row in legend(page)] == [c["id"] for c in expected]


def test_a_tiff_the_browser_cannot_show_gives_the_mask_alone(
    page: Any, demo_server: Served, real_photos: list[Path], tmp_path: Path
) -> None:
    tiff = tmp_path / "photo.tiff"
    Image.open(photo_to_show(real_photos)).save(tiff, compression="tiff_deflate")  # under the body limit
    upload(page, tiff)
    assert page.find_element("id", "error").text == (
        "This browser cannot display this image format; the mask is shown alone."
    )
    expected = segment_json(demo_server, tiff)
    assert [row[0] for row in legend(page)] == [c["id"] for c in by_share(expected["classes"])]
    assert console_errors(page) == []
