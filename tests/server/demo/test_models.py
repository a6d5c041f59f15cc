"""Two served models: the picker lists both, switching re-segments with the other one, and its
300 classes come as a 16-bit mask PNG that the page decodes exactly."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.server.demo.browser import console_errors, page_state, wait_for
from tests.server.demo.page import by_share, hover, legend, photo_to_show, segment_json, upload
from tests.server.live import Served, png_mask

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]
ADMIN_TOKEN = "demo-test-token"


def _interior_pixel(mask: np.ndarray, wanted: np.ndarray, margin: int = 4) -> tuple[int, int]:
    """(x, y) of a pixel with ``wanted`` set whose whole (2 * margin + 1)² neighbourhood has its class."""
    height, width = mask.shape
    for y, x in np.argwhere(wanted):
        if margin <= y < height - margin and margin <= x < width - margin:
            window = mask[y - margin : y + margin + 1, x - margin : x + margin + 1]
            if (window == mask[y, x]).all():
                return int(x), int(y)
    raise AssertionError("no interior pixel")


@pytest.fixture(scope="module")
def two_models(real_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from export.api import export_onnx

    folder = tmp_path_factory.mktemp("two-models")
    wide = export_onnx("random:b0", folder / "random_b0_300.onnx", num_labels=300, verify_graph=False)
    server = Served(
        folder, "--model", f"ade={real_b0_onnx}", "--model", f"wide={wide}", "--admin-token", ADMIN_TOKEN
    ).wait_ready()
    try:
        yield server
    finally:
        assert server.stop() == 0, server.log_tail()


def test_every_served_model_can_be_picked_and_a_16_bit_mask_is_read_exactly(
    browser: Any, two_models: Served, real_photos: list[Path]
) -> None:
    from selenium.webdriver.support.select import Select

    browser.get(f"{two_models.url}/demo/")
    wait_for(browser, page_state("idle"), what="the model list")
    picker = Select(browser.find_element("id", "model"))
    assert [o.get_attribute("value") for o in picker.options] == ["ade", "wide"]
    assert picker.first_selected_option.get_attribute("value") == "ade"  # the default model

    photo = photo_to_show(real_photos)
    upload(browser, photo)
    ade = segment_json(two_models, photo, model="ade")
    assert [row[0] for row in legend(browser)] == [c["id"] for c in by_share(ade["classes"])]

    browser.execute_script("document.body.dataset.state = 'sent'")
    picker.select_by_value("wide")  # the same image again, with the other model
    wait_for(browser, page_state("done"), what="the other model's answer")
    info = browser.find_element("id", "model-info").text
    assert "300 classes" in info
    wide_model = httpx.get(f"{two_models.url}/v1/models/wide", timeout=30).json()
    runs = f"{wide_model['runtime']} {wide_model['inference_precision']} (exact)"  # the true precision
    assert wide_model["exact"] and runs in info, info
    wide = segment_json(two_models, photo, model="wide")
    assert [row[0] for row in legend(browser)] == [c["id"] for c in by_share(wide["classes"])]

    mask = png_mask(base64.b64decode(wide["mask_png_base64"]))
    assert mask.dtype == np.uint16 and mask.max() >= 256  # a 16-bit PNG, ids above one byte
    x, y = _interior_pixel(mask, mask >= 256)
    class_id, label, (hx, hy) = hover(browser, x, y, wide["width"], wide["height"])
    assert class_id == int(mask[hy, hx]) == int(mask[y, x]) >= 256
    assert label == next(c["label"] for c in wide["classes"] if c["id"] == class_id)

    # unloaded while the page is open: it leaves the picker, and the page goes back to the other model
    browser.execute_script("document.body.dataset.state = 'sent'")
    unloaded = httpx.post(
        f"{two_models.url}/v1/models/wide/unload",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=60,
    )
    assert unloaded.status_code == 200, unloaded.text
    wait_for(browser, lambda d: len(Select(d.find_element("id", "model")).options) == 1, what="the picker")
    wait_for(browser, page_state("done"), what="the image again with the remaining model")
    assert "150 classes" in browser.find_element("id", "model-info").text
    assert [row[0] for row in legend(browser)] == [c["id"] for c in by_share(ade["classes"])]
    assert console_errors(browser) == []
