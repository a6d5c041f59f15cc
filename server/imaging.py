"""Image codec for the data plane: decode with limits, resize like the reference, encode masks.

Decoding checks the header (``Image.open`` reads the size lazily) against the pixel and side limits
before any pixel is decoded, so decompression bombs and absurd dimensions cost nothing.
"""

from __future__ import annotations

import io
import math
import struct
import zlib

import numpy as np
from PIL import Image

from server import errors

#: Formats the server decodes (PIL plugin names); everything else is rejected even if PIL knows it.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")


def decode_image(data: bytes, max_pixels: int, max_side: int) -> np.ndarray:
    """Decode ``data`` to uint8 RGB ``[H, W, 3]`` or raise a 400 ``ServeError`` (see ``open_image``)."""
    image = open_image(data, max_pixels, max_side)
    array = np.asarray(image, dtype=np.uint8)
    if array.shape != (image.height, image.width, 3):
        raise errors.corrupt_image(f"decoded to unexpected shape {array.shape}")
    return array


def open_image(data: bytes, max_pixels: int, max_side: int) -> Image.Image:
    """Decode ``data`` to a loaded RGB PIL image or raise a 400 ``ServeError``.

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
    # no ``with``: the source is in memory, and an RGB image is returned as decoded (no copy)
    width, height = image.size
    if width <= 0 or height <= 0:
        raise errors.corrupt_image(f"invalid image size {width}x{height}")
    if max(width, height) > max_side or width * height > max_pixels:
        raise errors.image_too_large(limits_detail(width, height, max_pixels, max_side))
    try:
        image.load()
        rgb = image if image.mode == "RGB" else image.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise errors.image_too_large(str(exc)) from None
    except Exception as exc:  # truncated or corrupt pixel data
        raise errors.corrupt_image(f"corrupt image data: {type(exc).__name__}: {exc}") from None
    if rgb.size != (width, height):
        raise errors.corrupt_image(f"decoded to unexpected size {rgb.size}")
    return rgb


def limits_detail(width: int, height: int, max_pixels: int, max_side: int) -> str:
    return (
        f"image is {width}x{height}; the limits are {max_side} pixels per side and "
        f"{max_pixels} pixels in total"
    )


def resize_bilinear(image: np.ndarray | Image.Image, size: tuple[int, int]) -> np.ndarray:
    """PIL bilinear resize of uint8 RGB to ``size`` = (height, width), exactly as SegformerImageProcessor."""
    height, width = size
    if isinstance(image, np.ndarray):
        if image.shape[:2] == (height, width):
            return image
        image = Image.fromarray(image)
    if image.size != (width, height):
        image = image.resize((width, height), resample=Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def native_size(height: int, width: int, max_side: int, multiple: int = 32) -> tuple[int, int]:
    """The image's own resolution scaled down to ``max_side`` if needed, rounded to ``multiple``."""
    scale = min(1.0, max_side / max(height, width))

    def snap(value: int) -> int:
        return max(multiple, math.floor(value * scale / multiple + 0.5) * multiple)

    return snap(height), snap(width)


def encode_mask_png(mask: np.ndarray) -> bytes:
    """Lossless PNG of a label mask: 8-bit grey for uint8 masks, 16-bit grey for uint16.

    Written directly (no per-row filter, deflate level 1 with the run-length strategy): label masks are
    long runs, and this is ~3x faster than PIL's encoder (which spends its time choosing filters) and
    ~40 % smaller (a 683x512 ADE20K mask: 4.4 KB vs 7.7 KB).
    """
    height, width = mask.shape
    depth, sample = (8, np.dtype(np.uint8)) if mask.dtype == np.uint8 else (16, np.dtype(">u2"))
    rows = np.empty((height, 1 + width * sample.itemsize), np.uint8)
    rows[:, 0] = 0  # filter type "None" for every scanline
    rows[:, 1:] = np.ascontiguousarray(mask, dtype=sample).view(np.uint8).reshape(height, -1)
    header = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0)  # greyscale, no interlace
    deflate = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)  # runs of labels: RLE is the fit
    idat = deflate.compress(rows) + deflate.flush()
    return b"".join((_PNG_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", idat), _chunk(b"IEND", b"")))


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(tag: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))


def palette_array(palette: list[tuple[int, int, int]], num_labels: int) -> np.ndarray:
    """``[max(num_labels, len(palette)), 3]`` uint8 colour table."""
    table = np.zeros((max(num_labels, len(palette), 1), 3), dtype=np.uint8)
    if palette:
        table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return table


def overlay_png(
    image: np.ndarray | Image.Image, mask: np.ndarray, palette: np.ndarray, alpha: float = 0.5
) -> bytes:
    """The RGB image blended with the class colours of ``mask`` (``alpha`` = mask opacity), as PNG."""
    colours = palette[np.minimum(mask, len(palette) - 1)]
    blended = np.asarray(image, dtype=np.float32) * (1.0 - alpha) + colours.astype(np.float32) * alpha
    buffer = io.BytesIO()
    Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8)).save(
        buffer, format="PNG", compress_level=1
    )
    return buffer.getvalue()
