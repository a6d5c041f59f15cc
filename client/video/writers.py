"""What ``segformer-client video`` writes, one frame at a time, in order; ``close`` leaves valid files.

* ``OverlayVideo``: the frames blended with the class colours (H.264 in MP4 when the wheel's FFmpeg has
  it, else MPEG-4 Part 2), each frame at its source timestamp.
* ``MaskVideo``: the label masks losslessly (FFV1, grey 8 or 16 bit, in Matroska), same timestamps.
* ``AnswerFolder``: ``DIR/<name>.png`` label masks (pixel value = class id; a video's names are
  ``000000``...), or with ``--format`` each frame's answer in that format (``DIR/000000.geojson``...).
* ``StatsLines``: one JSON line per frame: index, time, size, classes (id, label, pixels, fraction),
  latency; a refused frame: its error.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av
import av.container
import av.video.stream
import numpy as np

from client.cli import write_answer
from client.frames import Frame
from client.types import Segmentation

OVERLAY_CODECS = ("libx264", "h264", "mpeg4")  # the first this FFmpeg can encode


class Writer(Protocol):
    def write(self, frame: Frame, seg: Segmentation, latency_s: float) -> None: ...

    def close(self) -> None: ...


def palette_table(classes: list[dict[str, object]], num_labels: int) -> np.ndarray:
    """``[max(num_labels, 1), 3]`` uint8 colours from the model description's ``classes[].color``."""
    table = np.zeros((max(num_labels, len(classes), 1), 3), dtype=np.uint8)
    for entry in classes:
        color = entry.get("color")
        if isinstance(color, list | tuple) and len(color) == 3:
            table[int(str(entry["id"]))] = [int(c) for c in color]
    return table


def blend(rgb: np.ndarray, mask: np.ndarray, palette: np.ndarray, alpha: float) -> np.ndarray:
    """``rgb`` with each pixel's class colour over it at opacity ``alpha`` (the server's overlay formula)."""
    colours = palette[np.minimum(mask, len(palette) - 1)].astype(np.float32) * alpha
    return np.clip(rgb * np.float32(1.0 - alpha) + colours + 0.5, 0, 255).astype(np.uint8)


class _Video:
    """One video stream, opened at the first frame (its size) with the source's time base."""

    def __init__(self, path: Path, codec: str, pix_fmt: str, options: dict[str, str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.codec, self.pix_fmt, self.options = path, codec, pix_fmt, options
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._last_pts: int | None = None

    def _open(self, width: int, height: int, time_base: Fraction) -> av.video.stream.VideoStream:
        self._container = av.open(str(self.path), mode="w")
        stream = self._container.add_stream(self.codec, rate=round(1 / time_base) or 25, options=self.options)
        stream.width, stream.height, stream.pix_fmt = width, height, self.pix_fmt
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        return stream

    def put(self, frame: av.VideoFrame, source: Frame) -> None:
        if self._stream is None:
            self._stream = self._open(frame.width, frame.height, source.time_base)
        pts = source.pts if source.pts is not None else source.index
        pts = int(pts * source.time_base / self._stream.codec_context.time_base)
        if self._last_pts is not None and pts <= self._last_pts:  # a source without increasing pts
            pts = self._last_pts + 1
        frame.pts, frame.time_base, self._last_pts = pts, self._stream.codec_context.time_base, pts
        assert self._container is not None
        self._container.mux(self._stream.encode(frame))

    def close(self) -> None:
        if self._container is not None and self._stream is not None:
            self._container.mux(self._stream.encode(None))  # flush the encoder
        if self._container is not None:
            self._container.close()  # writes the index (MP4 moov): the file stays valid after Ctrl-C


def overlay_codec() -> str:
    return next(c for c in OVERLAY_CODECS if c in av.codecs_available)


class OverlayVideo:
    def __init__(self, path: Path, palette: np.ndarray, alpha: float = 0.5) -> None:
        codec = overlay_codec()
        options = {"crf": "20", "preset": "veryfast"} if codec == "libx264" else {}
        self._video = _Video(path, codec, "yuv420p", options)
        self.palette, self.alpha = palette, alpha

    def write(self, frame: Frame, seg: Segmentation, latency_s: float) -> None:
        rgb = frame.pixels()
        if seg.ok:
            rgb = blend(rgb, seg.mask(), self.palette, self.alpha)
        height, width = rgb.shape[:2]
        if height % 2 or width % 2:  # 4:2:0 needs even sides: repeat the last row/column
            rgb = np.pad(rgb, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        self._video.put(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24"), frame)

    def close(self) -> None:
        self._video.close()


class MaskVideo:
    def __init__(self, path: Path, sixteen_bit: bool = False) -> None:
        self._format = "gray16le" if sixteen_bit else "gray"
        self._video = _Video(path, "ffv1", self._format, {})

    def write(self, frame: Frame, seg: Segmentation, latency_s: float) -> None:
        if seg.ok:
            mask = seg.mask().astype(np.uint16 if self._format == "gray16le" else np.uint8)
            self._video.put(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(mask), format=self._format), frame
            )

    def close(self) -> None:
        self._video.close()


class AnswerFolder:
    """``DIR/<name>.<ext>``: each frame's answer in the asked ``--format`` (the label mask without one)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder

    def write(self, frame: Frame, seg: Segmentation, latency_s: float) -> None:
        if seg.ok:
            write_answer(self.folder, frame.name, seg)

    def close(self) -> None:
        return None


def stats_line(frame: Frame, seg: Segmentation, latency_s: float) -> dict[str, object]:
    line: dict[str, object] = {"frame": frame.index, "name": frame.name, "time": round(frame.seconds, 6)}
    if seg.error is not None:
        line["error"] = {"code": seg.error.code, "error": seg.error.error, "detail": seg.error.detail}
    else:
        line |= {"width": seg.width, "height": seg.height}
        line["classes"] = [
            {"id": c.id, "label": c.label, "pixels": c.pixels, "fraction": c.fraction} for c in seg.classes
        ]
    line["latency_ms"] = round(latency_s * 1000, 3)
    return line


class StatsLines:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("w", encoding="utf-8")

    def write(self, frame: Frame, seg: Segmentation, latency_s: float) -> None:
        self._file.write(json.dumps(stats_line(frame, seg, latency_s)) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
