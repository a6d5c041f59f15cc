"""Frames from a video file, a network stream or a camera, decoded by PyAV (FFmpeg's libraries).

``open_source`` opens ``SOURCE`` (a path, a URL that FFmpeg reads: ``rtsp://``, ``http://``...,
or a camera device ``/dev/videoN``) and ``decoded`` yields its first video stream's frames as RGB with
their presentation timestamps. A folder is the folder's images (``client.frames``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from fractions import Fraction

import av
import av.container

from client.frames import Frame

LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
CAMERA_FORMATS = {"linux": "v4l2", "darwin": "avfoundation", "win32": "dshow"}


def is_live(source: str) -> bool:
    """A network stream or a camera: frames come in real time and may be dropped."""
    return source.startswith(LIVE_SCHEMES) or source.startswith("/dev/video")


def open_source(source: str, timeout_s: float = 10.0) -> av.container.InputContainer:
    """The container of ``source``; a camera device through the platform's capture format."""
    options = {"rtsp_transport": "tcp"} if source.startswith("rtsp") else {}
    fmt = CAMERA_FORMATS.get(sys.platform) if source.startswith("/dev/video") else None
    container = av.open(source, mode="r", format=fmt, options=options, timeout=timeout_s)
    if not container.streams.video:
        container.close()
        raise ValueError("no video stream in it")
    return container


def decoded(container: av.container.InputContainer) -> Iterator[Frame]:
    """The first video stream's frames in presentation order, as RGB, numbered from 0."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    default_base = stream.time_base or Fraction(1, 90000)
    for index, frame in enumerate(container.decode(stream)):
        base = frame.time_base or default_base
        yield Frame(
            index, f"{index:06d}", rgb=frame.to_ndarray(format="rgb24"), pts=frame.pts, time_base=base
        )
