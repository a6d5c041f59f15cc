"""The one registry of output formats: REST (``format=``, ``Accept``), gRPC v1 (``SegmentRequest.format``),
the Open Inference Protocol (named outputs) and the client look formats up here.

MLServer's codec registry is the pattern: a format is a name, a content type and an encoder. A format
also says whether it needs the model's probabilities (so the data plane keeps the low-resolution
logits for that request only), the decoded image (kept for that request only: others drop their
pixels once resized, which a 12 Mpx photo holds at 48 MB) and whether it needs ``classes``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypedDict

from server import errors
from server.errors import shown
from server.outputs import confidence, masks, vectors
from server.outputs.base import Encoded, Encoder, Options
from server.types import SegmentResult


@dataclass(frozen=True)
class OutputFormat:
    name: str
    content_type: str
    encode: Encoder
    description: str
    needs_logits: bool = False  # the softmax: the data plane keeps this request's logits
    needs_image: bool = False  # the decoded pixels: the data plane keeps them for this request only
    needs_classes: bool = False
    max_classes: int | None = None  # the most classes one request may ask of it (None: any)
    negotiable: bool = True  # chosen by ``Accept`` when its content type is asked for


class Keep(TypedDict):
    """What the data plane keeps of a request for the formats it will be encoded in (the ``keep_*``
    fields of ``SegmentRequest``)."""

    keep_logits: bool
    keep_image: bool


def keep(formats: Iterable[OutputFormat | None]) -> Keep:
    """What ``formats`` need kept beyond the mask (``None``: a transport's own mask format, nothing)."""
    wanted = [f for f in formats if f is not None]
    return Keep(
        keep_logits=any(f.needs_logits for f in wanted), keep_image=any(f.needs_image for f in wanted)
    )


class FormatRegistry:
    """Formats by name, in the order they were registered (the first is the default)."""

    def __init__(self, formats: list[OutputFormat]) -> None:
        self._formats = {f.name: f for f in formats}

    @property
    def formats(self) -> list[OutputFormat]:
        return list(self._formats.values())

    @property
    def names(self) -> list[str]:
        return list(self._formats)

    @property
    def default(self) -> OutputFormat:
        return next(iter(self._formats.values()))

    def get(self, name: str) -> OutputFormat:
        """The format called ``name``; 400 naming the formats there are."""
        found = self._formats.get(name.strip().lower())
        if found is None:
            raise errors.invalid_argument(
                f"unknown format {shown(name)}; the formats are {', '.join(self.names)}"
            )
        return found

    def negotiate(self, name: str | None, accept: str | None) -> OutputFormat:
        """``name`` when given, else the first negotiable format whose content type ``Accept`` names,
        else the default (PNG)."""
        if name:
            return self.get(name)
        for part in (accept or "").lower().split(","):
            media = part.split(";")[0].strip()
            for fmt in self._formats.values():
                if fmt.negotiable and fmt.content_type == media:
                    return fmt
        return self.default

    def check(self, fmt: OutputFormat, options: Options) -> None:
        """What can be refused before any inference (an unknown class name waits for the model)."""
        if fmt.needs_classes and options.classes is None:
            raise errors.invalid_argument(f"format {fmt.name} needs classes=... (class ids or labels)")
        asked = len(options.classes or ())
        if fmt.max_classes is not None and asked > fmt.max_classes:
            raise errors.invalid_argument(
                f"format {fmt.name} maps at most {fmt.max_classes} classes a request (each is a full-size "
                f"image), got {asked}"
            )


FORMATS = FormatRegistry(
    [
        OutputFormat("png", "image/png", masks.png, "the label mask, 8-bit (16-bit above 256 classes) PNG"),
        OutputFormat("json", "application/json", masks.json, "class statistics and the PNG mask in base64"),
        OutputFormat(
            "overlay",
            "image/png",
            masks.overlay,
            "the image blended with the class colours",
            needs_image=True,
            negotiable=False,
        ),
        OutputFormat(
            "raw", "application/octet-stream", masks.raw, "the mask's bytes, row-major little-endian"
        ),
        OutputFormat("rle", vectors.RLE_TYPE, vectors.rle, "COCO RLE per class present"),
        OutputFormat("polygons", vectors.GEOJSON_TYPE, vectors.polygons, "GeoJSON (Multi)Polygon per class"),
        OutputFormat(
            "confidence",
            "image/png",
            confidence.confidence,
            "8-bit PNG of the largest softmax probability x255",
            needs_logits=True,
            negotiable=False,
        ),
        OutputFormat(
            "probability",
            confidence.PROBABILITY_TYPE,
            confidence.probability,
            "8-bit PNG of each chosen class's softmax probability",
            needs_logits=True,
            needs_classes=True,
            max_classes=confidence.MAX_PROBABILITY_CLASSES,
        ),
    ]
)


def encode(name: str, result: SegmentResult, options: Options) -> Encoded:
    """One result in format ``name``."""
    return FORMATS.get(name).encode(result, options)
