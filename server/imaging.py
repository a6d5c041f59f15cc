"""Image codec for the data plane: decode with limits, resize like the reference, encode masks.

Decoding checks the header (``Image.open`` reads the size lazily) against the pixel and side limits
before any pixel is decoded, so decompression bombs and absurd dimensions cost nothing.
"""

from __future__ import annotations

import io
import math
import time

import numpy as np
from PIL import Image

from server import errors
from server.metrics import STAGE_SECONDS

#: Formats the server decodes (PIL plugin names); everything else is rejected even if PIL knows it.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")


def decode_image(data: bytes, max_pixels: int, max_side: int) -> np.ndarray:
    """Decode ``data`` to uint8 RGB ``[H, W, 3]`` or raise a 400 ``ServeError``.

    Only the first frame of animated/multi-page images is used; alpha is dropped (like
    ``Image.convert("RGB")`` in the reference pipeline); EXIF orientation is not applied.
    """
    if not data:
        raise errors.corrupt_image("empty image")
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise errors.image_too_large(str(exc)) from None
    except Image.UnidentifiedImageError:
        raise errors.corrupt_image(
            f"not a decodable image (supported: {', '.join(ALLOWED_FORMATS)})"
        ) from None
    except Exception as exc:  # PIL raises many types on malformed headers
        raise errors.corrupt_image(f"unreadable image header: {type(exc).__name__}") from None
    with image:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise errors.corrupt_image(f"invalid image size {width}x{height}")
        if max(width, height) > max_side or width * height > max_pixels:
            raise errors.image_too_large(
                f"image is {width}x{height}; the limits are {max_side} pixels per side and "
                f"{max_pixels} pixels in total"
            )
        try:
            image.load()
            rgb = image.convert("RGB")
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise errors.image_too_large(str(exc)) from None
        except Exception as exc:  # truncated or corrupt pixel data
            raise errors.corrupt_image(f"corrupt image data: {type(exc).__name__}: {exc}") from None
    array = np.asarray(rgb, dtype=np.uint8)
    if array.shape != (height, width, 3):
        raise errors.corrupt_image(f"decoded to unexpected shape {array.shape}")
    return array


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """PIL bilinear resize of uint8 RGB to ``size`` = (height, width), exactly as SegformerImageProcessor."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    resized = Image.fromarray(image).resize((width, height), resample=Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def native_size(height: int, width: int, max_side: int, multiple: int = 32) -> tuple[int, int]:
    """The image's own resolution scaled down to ``max_side`` if needed, rounded to ``multiple``."""
    scale = min(1.0, max_side / max(height, width))

    def snap(value: int) -> int:
        return max(multiple, math.floor(value * scale / multiple + 0.5) * multiple)

    return snap(height), snap(width)


def encode_mask_png(mask: np.ndarray) -> bytes:
    """Lossless PNG of a label mask: 8-bit grey for uint8 masks, 16-bit grey for uint16."""
    start = time.perf_counter()
    if mask.dtype != np.uint8:
        mask = mask.astype(np.uint16)
    image = Image.fromarray(np.ascontiguousarray(mask))  # uint8 -> "L", uint16 -> "I;16"
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    STAGE_SECONDS.labels("encode").observe(time.perf_counter() - start)
    return buffer.getvalue()


def palette_array(palette: list[tuple[int, int, int]], num_labels: int) -> np.ndarray:
    """``[max(num_labels, len(palette)), 3]`` uint8 colour table."""
    table = np.zeros((max(num_labels, len(palette), 1), 3), dtype=np.uint8)
    if palette:
        table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return table


def overlay_png(image: np.ndarray, mask: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> bytes:
    """The RGB image blended with the class colours of ``mask`` (``alpha`` = mask opacity), as PNG."""
    start = time.perf_counter()
    colours = palette[np.minimum(mask, len(palette) - 1)]
    blended = image.astype(np.float32) * (1.0 - alpha) + colours.astype(np.float32) * alpha
    buffer = io.BytesIO()
    Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8)).save(
        buffer, format="PNG", compress_level=1
    )
    STAGE_SECONDS.labels("encode").observe(time.perf_counter() - start)
    return buffer.getvalue()
