"""Image codec for the data plane: decode with limits, resize like the reference, encode masks.

Decoding checks the header (``Image.open`` reads the size lazily) against the pixel and side limits
before any pixel is decoded, so decompression bombs and absurd dimensions cost nothing.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import struct
import zlib
from typing import Protocol

import numpy as np
from PIL import Image

try:  # ISA-L's deflate (the `isal` package): see _deflater
    from isal import isal_zlib
except ImportError:  # pragma: no cover - zlib then
    isal_zlib = None

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
    return load_rgb(peek_image(data, max_pixels, max_side))


def peek_image(data: bytes, max_pixels: int, max_side: int) -> Image.Image:
    """The image with only its header read (size checked against the limits), or a 400 ``ServeError``."""
    if not data:
        raise errors.corrupt_image("empty image")
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise errors.image_too_large(_bomb_detail(exc, max_pixels, max_side)) from None
    except Image.UnidentifiedImageError:
        raise errors.corrupt_image(
            f"not a decodable image (supported: {', '.join(ALLOWED_FORMATS)})"
        ) from None
    except Exception:  # PIL raises many types on malformed headers
        raise errors.corrupt_image("the image header is malformed (not a valid image file)") from None
    # no ``with``: the source is in memory, and an RGB image is returned as decoded (no copy)
    width, height = image.size
    if width <= 0 or height <= 0:
        raise errors.corrupt_image(f"invalid image size {width}x{height}")
    if max(width, height) > max_side or width * height > max_pixels:
        raise errors.image_too_large(limits_detail(width, height, max_pixels, max_side))
    return image


def load_rgb(image: Image.Image, draft: tuple[int, int] | None = None) -> Image.Image:
    """Decode the pixels of a ``peek_image`` result to RGB, or a 400 ``ServeError``. ``draft`` =
    (height, width): a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) still at least that
    large (libjpeg's scaled IDCT; Pillow's ``draft``), other formats in full."""
    if draft is not None and image.format == "JPEG":
        with contextlib.suppress(Exception):  # a header Pillow cannot scale: decoded in full
            image.draft(image.mode, (draft[1], draft[0]))
    width, height = image.size
    try:
        image.load()
        rgb = image if image.mode == "RGB" else image.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # sizes were checked on peek
        raise errors.image_too_large(f"image is {width}x{height}, too large to decode") from None
    except Exception as exc:  # truncated or corrupt pixel data
        raise errors.corrupt_image(_corrupt_detail(exc)) from None
    if rgb.size != (width, height):
        raise errors.corrupt_image(f"decoded to unexpected size {rgb.size}")
    return rgb


def decoded_size(image: Image.Image, draft: tuple[int, int] | None = None) -> tuple[int, int]:
    """(height, width) that ``load_rgb(image, draft)`` decodes, from the header: Pillow's ``draft``
    picks the largest DCT scale 1/s (s = 8, 4, 2) with s <= min(width // w, height // h)."""
    if draft is None or image.format != "JPEG":
        return image.height, image.width
    ratio = min(image.width // draft[1], image.height // draft[0])
    scale = next((s for s in (8, 4, 2) if ratio >= s), 1)
    return -(-image.height // scale), -(-image.width // scale)


def _bomb_detail(exc: Exception, max_pixels: int, max_side: int) -> str:
    """Pillow's own decompression-bomb refusal, quoting the configured limits (not Pillow's)."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"has {int(found.group(1))} pixels" if found else "is too large"
    return f"image {size}; the limits are {max_side} pixels per side and {max_pixels} pixels in total"


def _corrupt_detail(exc: Exception) -> str:
    """What is wrong with the pixel data, in words (no exception class names)."""
    text = str(exc).lower()
    if "truncated" in text or "end of file" in text or "eof" in text:
        return "the image data ends early (the file is truncated)"
    return "the image data is corrupt and cannot be decoded"


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

    Written directly (no per-row filter, level-1 deflate: ISA-L's, else zlib's run-length strategy):
    label masks are long runs, and this is several times faster than PIL's encoder (which spends its
    time choosing filters) and smaller (a 683x512 ADE20K mask: 5.6 KB with ISA-L, 4.1 KB with zlib,
    7.7 KB with PIL).
    """
    height, width = mask.shape
    depth, sample = (8, np.dtype(np.uint8)) if mask.dtype == np.uint8 else (16, np.dtype(">u2"))
    deflate = _deflater(zlib.Z_RLE)  # runs of labels: zlib's RLE is the fit where ISA-L is missing
    parts = []
    for start, end in _bands(height, width * sample.itemsize):  # bounded memory for huge masks
        rows = np.empty((end - start, 1 + width * sample.itemsize), np.uint8)
        rows[:, 0] = 0  # filter type "None" for every scanline
        band = np.ascontiguousarray(mask[start:end], dtype=sample)
        rows[:, 1:] = band.view(np.uint8).reshape(end - start, -1)
        parts.append(deflate.compress(rows))
    parts.append(deflate.flush())
    return _png(width, height, depth, 0, b"".join(parts))  # greyscale


class Deflater(Protocol):
    """A zlib-format compressor (``zlib.compressobj``'s interface)."""

    def compress(self, data: bytes | np.ndarray, /) -> bytes: ...
    def flush(self) -> bytes: ...


def _deflater(strategy: int) -> Deflater:
    """Level-1 deflate in the zlib format: ISA-L's (``isal``, SIMD) where installed, 5-10x faster than
    zlib's at a similar size (a 12 Mpx mask: 2-30 ms instead of 120-400, 75 KB instead of 35; its RGB
    overlay: 0.2 s instead of 1.4-1.8, 7.2 MB instead of 7.7), else zlib's with ``strategy``."""
    if isal_zlib is not None:
        return isal_zlib.compressobj(1, isal_zlib.DEFLATED, 15)
    return zlib.compressobj(1, zlib.DEFLATED, 15, 9, strategy)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: bytes of image data per band when encoding: full-resolution work stays in bounded pieces, below the
#: server's 1 MiB mmap threshold so the heap reuses them (a 4 MB band was a fresh mapping faulted page by
#: page: a 12 Mpx mask's PNG took 4-8 ms of CPU instead of 2-3)
BAND_BYTES = 1 << 19


def _bands(height: int, row_bytes: int) -> list[tuple[int, int]]:
    rows = max(1, BAND_BYTES // max(1, row_bytes))
    return [(start, min(height, start + rows)) for start in range(0, height, rows)]


def _png(width: int, height: int, depth: int, colour_type: int, idat: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)  # no interlace
    return b"".join((_PNG_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", idat), _chunk(b"IEND", b"")))


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
    """The RGB image blended with the class colours of ``mask`` (``alpha`` = mask opacity), as PNG.

    Blended (Pillow's ``blend``, in C) and compressed in bands of rows (PNG "Up" filter, level-1
    deflate: ``_deflater``), so a huge image costs a few MB of working memory beyond its mask and
    pixels; an image decoded smaller than its mask (``--jpeg-draft``) is scaled up band by band."""
    height, width = mask.shape
    deflate = _deflater(zlib.Z_DEFAULT_STRATEGY)
    parts, previous = [], np.zeros(width * 3, np.uint8)
    flat_palette = palette.reshape(-1).tobytes()
    for start, end in _bands(height, width * 4):
        if isinstance(image, Image.Image) and image.size != (width, height):  # a draft decode
            sy = image.height / height
            box = (0.0, start * sy, float(image.width), end * sy)
            pixels = image.resize((width, end - start), Image.Resampling.BILINEAR, box=box)
        elif isinstance(image, Image.Image):
            pixels = image.crop((0, start, width, end))
        else:
            pixels = Image.fromarray(np.ascontiguousarray(image[start:end]), "RGB")
        labels = np.minimum(mask[start:end], len(palette) - 1)
        if len(palette) <= 256:  # a palette image's RGB conversion: a table lookup in C
            colours = Image.fromarray(labels.astype(np.uint8, copy=False), "L").convert("P")
            colours.putpalette(flat_palette)
            colours = colours.convert("RGB")
        else:
            colours = Image.fromarray(palette[labels], "RGB")
        flat = np.asarray(Image.blend(pixels.convert("RGB"), colours, alpha)).reshape(end - start, width * 3)
        rows = np.empty((end - start, 1 + width * 3), np.uint8)
        rows[:, 0] = 2  # filter type "Up": the difference with the row above (mod 256)
        rows[0, 1:] = flat[0] - previous
        rows[1:, 1:] = flat[1:] - flat[:-1]
        previous = flat[-1].copy()
        parts.append(deflate.compress(rows))
    parts.append(deflate.flush())
    return _png(width, height, 8, 2, b"".join(parts))  # RGB
