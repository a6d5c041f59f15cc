"""Mask PNGs written by our own encoder decode, with PIL, to exactly the mask."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from server.imaging import encode_mask_png


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
