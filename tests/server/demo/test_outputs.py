"""The demo page's confidence view and GeoJSON download, and its timings panel naming the server's stages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.server.demo.browser import console_errors, wait_for
from tests.server.demo.page import photo_to_show, upload
from tests.server.live import Served, png_mask

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]


def _server(demo_server: Served, photo: Path, format: str) -> bytes:
    answer = httpx.post(
        f"{demo_server.url}/v1/segment", params={"format": format}, content=photo.read_bytes(),
        headers={"Content-Type": "image/jpeg"}, timeout=120,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    return answer.content


def test_confidence_view_geojson_download_and_timings(
    page: Any, demo_server: Served, real_photos: list[Path], tmp_path: Path
) -> None:
    page.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    photo = photo_to_show(real_photos)
    upload(page, photo)
    timings = page.find_element("id", "timings").text
    assert "mask" in timings and "encode" not in timings

    page.execute_script(
        "const v = document.getElementById('view');"
        "v.value = 'confidence'; v.dispatchEvent(new Event('change'));"
    )
    view = "return document.getElementById('overlay-canvas').dataset.view"
    wait_for(page, lambda d: d.execute_script(view) == "confidence", what="the confidence view")
    shown = page.execute_script(
        "const c = document.getElementById('overlay-canvas');"
        "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);"
    )
    with Image.open(photo) as image:
        width, height = image.size
    rgba = np.asarray(shown, np.uint8).reshape(height, width, 4)
    expected = png_mask(_server(demo_server, photo, "confidence"))
    assert np.abs(rgba[..., 0].astype(int) - expected).max() <= 1  # grey: the confidence itself
    assert np.array_equal(rgba[..., 0], rgba[..., 2])

    page.find_element("id", "download-geojson").click()
    saved = tmp_path / f"{photo.stem}.geojson"
    wait_for(page, lambda d: saved.exists() and saved.stat().st_size > 0, what="the GeoJSON download")
    assert json.loads(saved.read_text()) == json.loads(_server(demo_server, photo, "polygons"))
    assert console_errors(page) == []
