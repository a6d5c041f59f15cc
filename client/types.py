"""What the client returns: ``Segmentation`` (one image's mask and classes) and ``SegmentationError``."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image

# magic bytes → Content-Type, for REST bodies (the server sniffs too; octet-stream when unknown)
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})


def content_type(data: bytes) -> str:
    """The image MIME type from its first bytes (``application/octet-stream`` when unknown)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for magic, mime in _SIGNATURES:
        if data.startswith(magic):
            return mime
    return "application/octet-stream"


class SegmentationError(Exception):
    """The server refused a request (or, in a stream, one frame).

    ``code`` is the gRPC status code name (``INVALID_ARGUMENT``...) or the HTTP status (``"400"``),
    ``error`` the server's short error kind (``corrupt_image``...), ``detail`` its sentence.
    """

    def __init__(self, code: str, error: str, detail: str, frame_id: int | None = None) -> None:
        super().__init__(f"{code} {error}: {detail}" if error else f"{code}: {detail}")
        self.code, self.error, self.detail, self.frame_id = code, error, detail, frame_id


@dataclass(frozen=True)
class ClassInfo:
    id: int
    label: str
    pixels: int
    fraction: float


@dataclass(frozen=True)
class Ask:
    """What is asked of the server beyond a mask: one of its output formats (``None``: the label mask) and
    the format parameters (docs/outputs.md): ``classes`` (ids or names; the others become the
    background value in every format), ``tolerance`` and ``min_area`` (``polygons``)."""

    format: str | None = None
    classes: tuple[str, ...] = ()
    tolerance: float | None = None
    min_area: float | None = None

    @classmethod
    def of(cls, output: str | Ask | None) -> Ask:
        """``output`` as an ``Ask``: a format name alone, an ``Ask``, or nothing (the label mask)."""
        return output if isinstance(output, Ask) else cls(format=output or None)

    def parameters(self) -> dict[str, str | float | list[str]]:
        """The parameters that are set, by their REST query / gRPC ``SegmentRequest`` field names."""
        chosen: dict[str, str | float | list[str]] = {}
        if self.classes:
            chosen["classes"] = list(self.classes)
        if self.tolerance is not None:
            chosen["tolerance"] = self.tolerance
        if self.min_area is not None:
            chosen["min_area"] = self.min_area
        return chosen


@dataclass(frozen=True)
class Output:
    """An answer in one of the server's output formats (``format=``, gRPC ``SegmentRequest.format``):
    its bytes, content type and fields (REST's ``X-Segformer-*`` headers)."""

    format: str
    content_type: str
    data: bytes
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def suffix(self) -> str:
        """A file suffix for the content type (``.png``, ``.json``, ``.geojson``...; ``.bin`` unknown)."""
        return SUFFIXES.get(self.content_type.split(";")[0].strip(), ".bin")


SUFFIXES = {
    "image/png": ".png",
    "application/json": ".json",
    "application/geo+json": ".geojson",
    "application/vnd.coco-rle+json": ".rle.json",
    "application/vnd.segformer.probability+json": ".json",
    "application/octet-stream": ".raw",
}


@dataclass
class Segmentation:
    """One image's result; in streams, ``error`` is set (and the mask empty) when that frame failed."""

    width: int = 0
    height: int = 0
    mask_data: bytes = b""
    mask_format: str = "png"  # png, raw, or another format of the server's (mask() reads png and raw)
    dtype: Literal["uint8", "uint16"] = "uint8"
    classes: list[ClassInfo] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    frame_id: int = 0
    error: SegmentationError | None = None
    output: Output | None = None  # when a format was asked for (then no mask)

    @property
    def ok(self) -> bool:
        return self.error is None

    def mask(self) -> np.ndarray:
        """The label mask as a numpy array [height, width] (uint8, or uint16 for > 256 classes)."""
        if self.error is not None:
            raise self.error
        if self.mask_format not in ("png", "raw"):
            raise ValueError(f"a {self.mask_format!r} mask is not a label image: ask for png or raw")
        if self.mask_format == "raw":
            return np.frombuffer(self.mask_data, dtype=np.dtype(self.dtype).newbyteorder("<")).reshape(
                self.height, self.width
            )
        with Image.open(io.BytesIO(self.mask_data)) as image:
            array = np.asarray(image)
        return array.astype(np.uint16) if array.dtype.kind == "i" or array.dtype == np.uint16 else array

    def mask_png(self) -> bytes:
        """The mask as PNG bytes (as sent, or encoded here from raw)."""
        if self.mask_format == "png" and self.error is None:
            return self.mask_data
        mask = self.mask()
        buffer = io.BytesIO()
        Image.fromarray(mask).save(buffer, format="PNG")
        return buffer.getvalue()
