"""Mask PNGs written by our own encoder decode, with PIL, to exactly the mask; DCT-scaled JPEG decodes;
overlays of images decoded smaller than their mask."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from server import imaging
from server.imaging import encode_mask_png
from server.memory import MemoryBudget


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (480, 640), (333, 517)])
def test_mask_png_round_trip(dtype: type, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    high = 256 if dtype is np.uint8 else 65536
    mask = rng.integers(0, high, shape).astype(dtype)
    mask[: shape[0] // 2] = 3  # a long run, like a real mask
    decoded = Image.open(io.BytesIO(encode_mask_png(mask)))
    assert decoded.mode == ("L" if dtype is np.uint8 else "I;16")
    assert np.array_equal(np.asarray(decoded).astype(dtype), mask)


def test_non_contiguous_mask() -> None:
    mask = np.arange(200, dtype=np.uint8).reshape(10, 20)[:, ::2]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_mask_png(mask)))), mask)


def _jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("size", "scaled"),
    [
        ((4032, 3024), (1008, 756)),
        ((2048, 1024), (1024, 512)),
        ((1100, 1300), (550, 650)),
        ((683, 512), None),
    ],
)
def test_jpeg_draft_decodes_the_size_the_budget_reserves(size: tuple[int, int], scaled: tuple | None) -> None:
    """``decoded_size`` (from the header, before decoding) is what ``load_rgb`` decodes with a draft."""
    data, limit = _jpeg(*size), 10**9
    draft = (512, 512)
    expected = scaled or size
    assert imaging.decoded_size(imaging.peek_image(data, limit, 10**5), draft) == (expected[1], expected[0])
    assert imaging.load_rgb(imaging.peek_image(data, limit, 10**5), draft).size == expected
    assert imaging.load_rgb(imaging.peek_image(data, limit, 10**5)).size == size  # no draft: in full
    png = io.BytesIO()
    Image.new("RGB", size).save(png, "PNG")  # only JPEGs are scaled
    peeked = imaging.peek_image(png.getvalue(), limit, 10**5)
    assert imaging.decoded_size(peeked, draft) == (size[1], size[0])


def test_a_phone_photo_reserves_its_pixels_and_mask() -> None:
    budget = MemoryBudget(0)
    full = budget.cost(4032, 3024, (3024, 4032), mask_bytes=1)
    drafted = budget.cost(4032, 3024, (756, 1008), mask_bytes=1)
    assert full == 4032 * 3024 * 5 + 16 * 2**20  # RGBX pixels + uint8 mask + bands: ~78 MB
    assert drafted == 1008 * 756 * 4 + 4032 * 3024 + 16 * 2**20  # ~32 MB


def test_overlay_of_a_draft_decode_is_scaled_up_to_the_mask() -> None:
    small = Image.fromarray(np.tile(np.arange(0, 250, 10, dtype=np.uint8)[None, :, None], (20, 1, 3)))
    mask = np.zeros((80, 100), np.uint8)
    mask[:, 50:] = 1
    palette = imaging.palette_array([(255, 0, 0), (0, 0, 255)], 2)
    with Image.open(io.BytesIO(imaging.overlay_png(small, mask, palette, 0.5))) as image:
        blended = np.asarray(image, dtype=np.int16)
    assert blended.shape == (80, 100, 3)
    red, blue = blended[..., 0] - blended[..., 2], blended[..., 2] - blended[..., 0]
    assert red[:, :50].min() >= 126 and blue[:, 50:].min() >= 126  # each half its class colour at 0.5
    grey = np.asarray(small.resize((100, 80), Image.Resampling.BILINEAR), dtype=np.int16)[..., 1]
    assert np.abs(blended[..., 1] - grey // 2).max() <= 2  # the photo shows through, scaled up
