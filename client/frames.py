"""``Frame``: one image of a source (a file, a folder, a video, a camera), and the sources made of files.

Every source yields ``Frame`` s in order; the pipeline (``client.pipeline``) sends ``Frame.payload()``
and the writers read ``Frame.pixels()``. A file is sent as its own bytes (the server decodes it); a
decoded video frame is encoded here (``png``, lossless, by default) only when it is sent.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from client.types import IMAGE_SUFFIXES

FrameCodec = Literal["png", "jpeg", "bmp"]
FRAME_CODECS: tuple[FrameCodec, ...] = ("png", "jpeg", "bmp")
DEFAULT_RATE = Fraction(25)  # a folder of frames as a video: frames per second


@dataclass
class Frame:
    """One frame: ``index`` in its source (a live source's skipped frames leave gaps), ``name`` (a
    file's stem, else the index as ``000000``), the encoded ``data`` or decoded ``rgb`` pixels, and its
    presentation time ``pts`` in ``time_base`` seconds."""

    index: int
    name: str
    data: bytes | None = None
    rgb: np.ndarray | None = None
    pts: int | None = None
    time_base: Fraction = field(default_factory=lambda: 1 / DEFAULT_RATE)
    captured: float = field(default_factory=time.perf_counter)  # when decoded or grabbed
    origin: str = ""  # the file it came from (for messages)

    def payload(self, codec: FrameCodec = "png") -> bytes:
        """The bytes to send: the file as read, or the decoded pixels encoded once with ``codec``."""
        if self.data is None:
            assert self.rgb is not None, "a frame holds bytes or pixels"
            self.data = encode(self.rgb, codec)
        return self.data

    def pixels(self) -> np.ndarray:
        """RGB uint8 [H, W, 3]: the decoded frame, or the file decoded here."""
        if self.rgb is None:
            assert self.data is not None
            with Image.open(io.BytesIO(self.data)) as image:
                self.rgb = np.asarray(image.convert("RGB"))
        return self.rgb

    @property
    def seconds(self) -> float:
        return float((self.pts if self.pts is not None else self.index) * self.time_base)


def encode(rgb: np.ndarray, codec: FrameCodec) -> bytes:
    """``png`` (lossless, fast deflate), ``jpeg`` (quality 95, smallest) or ``bmp`` (no compression)."""
    buffer = io.BytesIO()
    options = {"png": {"compress_level": 1}, "jpeg": {"quality": 95}, "bmp": {}}[codec]
    Image.fromarray(rgb).save(buffer, format=codec.upper(), **options)
    return buffer.getvalue()


def image_files(folder: Path) -> list[Path]:
    """The images of a folder (not recursive), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def expand(inputs: Sequence[Path]) -> list[Path]:
    """Files as given, folders as their sorted images."""
    return [f for p in inputs for f in (image_files(p) if p.is_dir() else [p])]


def file_frames(files: Sequence[Path], rate: Fraction = DEFAULT_RATE) -> Iterator[Frame]:
    """Each file as a frame, read when it is pulled; frame ``i`` at ``i / rate`` seconds."""
    for index, path in enumerate(files):
        data = path.read_bytes()
        yield Frame(index, path.stem, data=data, pts=index, time_base=1 / rate, origin=str(path))
