"""Test images: smooth random scenes (so masks vary between frames), encoded, and a > 6 MB noisy PNG."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def scene(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random RGB image [H, W, 3] uint8 (a few colour blobs, bilinearly blended)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR))


def encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def scene_png(height: int, width: int, seed: int) -> bytes:
    return encode(scene(height, width, seed))


def noisy_png(min_bytes: int, seed: int = 0) -> bytes:
    """An RGB PNG of uniform noise (incompressible) of at least ``min_bytes`` bytes."""
    side = int((min_bytes / 3) ** 0.5) + 16
    noise = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    data = encode(noise)
    assert len(data) >= min_bytes
    return data


def decode_mask(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image)
