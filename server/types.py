"""What the data plane takes and gives: ``SegmentRequest`` in, ``SegmentResult`` out (no transport here)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel

from contract.spec import ModelSpec

Mode = Literal["resize", "native", "slide"]
MODES: tuple[Mode, ...] = ("resize", "native", "slide")


@dataclass
class SegmentRequest:
    """One image for one model: encoded ``image`` bytes, or decoded ``pixels`` (uint8 ``[H, W, 3]`` RGB)."""

    image: bytes | None = None
    mode: str | None = None  # "resize" | "native"; None = the model's default; anything else is a 400
    deadline: float | None = None  # time.monotonic() based; None = the server default
    transport: str = "rest"
    endpoint: str = "segment"
    model: str | None = None  # None or "" = the default model
    pixels: np.ndarray | None = None
    keep_logits: bool = False  # a format needs the softmax (server/outputs/confidence.py); not with slide
    keep_image: bool = False  # a format needs the decoded pixels (overlay): else dropped once resized


class ClassStat(BaseModel):
    id: int
    label: str
    pixels: int
    fraction: float


def class_stats(mask: np.ndarray, spec: ModelSpec) -> list[ClassStat]:
    """Pixels and fraction of the image per class present in ``mask``."""
    if mask.dtype == np.uint8:  # PIL's C histogram: no int64 copy of the mask, unlike np.bincount
        counts = np.asarray(Image.fromarray(mask).histogram(), dtype=np.int64)
    else:
        counts = np.bincount(mask.ravel(), minlength=spec.num_labels)
    total = float(mask.size)
    return [
        ClassStat(id=int(i), label=spec.label(int(i)), pixels=int(counts[i]), fraction=counts[i] / total)
        for i in np.flatnonzero(counts)
    ]


@dataclass
class SegmentResult:
    """A mask at the original size and what the transports answer with.

    ``classes`` is computed on first use, in the worker thread where the transport encodes the response
    (one thread hop fewer per request); its time goes into ``timings["postprocess"]``.
    """

    mask: np.ndarray  # [H, W] uint8 | uint16 at the original size
    width: int
    height: int
    spec: ModelSpec
    model: str  # the name it was served under
    palette: np.ndarray  # [C, 3] uint8 class colours (overlays)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    image: Image.Image | np.ndarray | None = None  # the decoded RGB image
    logits: np.ndarray | None = None  # float32 [C, h, w] low-resolution logits, when the request kept them

    @cached_property
    def classes(self) -> list[ClassStat]:
        start = time.monotonic()
        classes = class_stats(self.mask, self.spec)
        self.timings["postprocess"] = time.monotonic() - start
        return classes
