"""Short real videos for the video tests, made with PyAV from the real photos."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

SIZE = (1280, 720)  # width, height


def frames_from_photos(photos: list[Path], count: int, size: tuple[int, int] = SIZE) -> list[np.ndarray]:
    """``count`` RGB frames: each photo scaled to cover ``size``, a slow pan across it (frames differ)."""
    width, height = size
    out: list[np.ndarray] = []
    per_photo = max(1, count // len(photos))
    for i in range(count):
        with Image.open(photos[(i // per_photo) % len(photos)]) as photo:
            scale = max(width / photo.width, height / photo.height) * 1.1
            big = photo.convert("RGB").resize((round(photo.width * scale), round(photo.height * scale)))
        step = i % per_photo
        left = min(big.width - width, step * 8)
        top = min(big.height - height, step * 4)
        out.append(np.asarray(big.crop((left, top, left + width, top + height))))
    return out


def write_video(path: Path, frames: list[np.ndarray], rate: int) -> None:
    """H.264 at ``rate`` frames per second, in the container of the suffix (.mp4, .ts...)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(rate))
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))


def decode(path: Path, fmt: str = "rgb24") -> list[av.VideoFrame]:
    """Every frame of the first video stream, decoded (``to_ndarray(format=fmt)`` by the caller)."""
    with av.open(str(path)) as container:
        return list(container.decode(video=0))
