"""Property test of the decode path: random and mutated bytes only ever give an image or a 4xx."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from server.errors import ServeError
from server.imaging import decode_image

MAX_PIXELS, MAX_SIDE = 1_000_000, 2048


def _encoded(fmt: str, mode: str = "RGB", **save: object) -> bytes:
    rng = np.random.default_rng(len(fmt))
    array = rng.integers(0, 256, (23, 37, 3), dtype=np.uint8)
    image = Image.fromarray(array).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


SEEDS = [
    _encoded("PNG"),
    _encoded("PNG", "P"),
    _encoded("PNG", "RGBA"),
    _encoded("PNG", "I;16"),
    _encoded("JPEG", quality=80),
    _encoded("JPEG", "L", progressive=True),
    _encoded("WEBP"),
    _encoded("BMP"),
    _encoded("TIFF"),
    _encoded("TIFF", compression="tiff_deflate"),
    _encoded("GIF"),
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        action = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite_header"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif action == "truncate":
            del data[position:]
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 64))]
        else:  # the size fields live in the first bytes of every format
            data[position % 40 : position % 40 + 4] = draw(st.binary(min_size=4, max_size=4))
    return bytes(data)


def check(data: bytes) -> None:
    try:
        image = decode_image(data, MAX_PIXELS, MAX_SIDE)
    except ServeError as exc:
        assert 400 <= exc.status < 500 and exc.error in {"corrupt_image", "image_too_large"}
        assert exc.detail
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] * image.shape[1] <= MAX_PIXELS and max(image.shape[:2]) <= MAX_SIDE


def test_valid_seeds_decode() -> None:
    for data in SEEDS[:-1]:
        assert decode_image(data, MAX_PIXELS, MAX_SIDE).shape == (23, 37, 3)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    check(data)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_images(data: bytes) -> None:
    check(data)
