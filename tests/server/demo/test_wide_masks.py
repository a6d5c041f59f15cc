"""More than 256 classes: the server's 16-bit mask PNG is decoded exactly in the page."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.server.demo.browser import page_state, wait_for
from tests.server.demo.page import by_share, hover, legend, photo_to_show, segment_json, upload
from tests.server.live import Served, png_mask

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]


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
        photo = photo_to_show(real_photos)
        upload(browser, photo)
        expected = segment_json(server, photo)
        mask = png_mask(base64.b64decode(expected["mask_png_base64"]))
        assert mask.dtype == np.uint16 and mask.max() >= 256  # a 16-bit PNG, ids above one byte
        assert [row[0] for row in legend(browser)] == [c["id"] for c in by_share(expected["classes"])]
        x, y = _interior_pixel(mask, mask >= 256)
        class_id, _, (hx, hy) = hover(browser, x, y, expected["width"], expected["height"])
        assert class_id == int(mask[hy, hx]) == int(mask[y, x]) >= 256
    finally:
        assert server.stop() == 0
