"""``segformer-client video SOURCE``: segment a video file, a folder of frames, a stream or a camera.

    segformer-client video clip.mp4 --url grpc://127.0.0.1:50051 --overlay out.mp4 --masks masks/
    segformer-client video rtsp://camera/stream --url grpc://HOST:50051 --stats live.jsonl
    segformer-client video /dev/video0 --url grpc://HOST:50051 --overlay cam.mp4
    segformer-client video frames/ --url grpc://HOST:50051 --mask-video masks.mkv --rate 30

Files and folders: every frame, in order, as fast as the server answers. Live sources (rtsp://,
http(s)://, udp://..., /dev/videoN, or --live): the newest frame is sent whenever a slot is free,
the others are skipped and counted, at most --inflight frames are in flight. Ctrl-C stops cleanly
(the frames in flight are answered; a second Ctrl-C stops at once): the files written stay valid.
Exit status: 0 done, 1 some frames refused, 2 on an error.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from types import FrameType

from client.cli import add_request_options, asked, server_url
from client.client import SegformerClient
from client.frames import FRAME_CODECS, Frame, expand, file_frames
from client.pipeline import Request, segment_frames
from client.progress import Progress
from client.types import SegmentationError
from client.video import decode, writers
from client.video.live import Newest, paced

PROG = "segformer-client video"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("source", help="a video file, a folder of frames, a stream URL or a camera device")
    add_request_options(p)
    p.add_argument("--overlay", type=Path, help="write the frames blended with the class colours (.mp4)")
    p.add_argument("--masks", type=Path, help="write each label mask as DIR/000000.png, ...")
    p.add_argument("--mask-video", type=Path, help="write the label masks as a lossless video (FFV1, .mkv)")
    p.add_argument("--stats", type=Path, help="write per-frame class statistics as JSON lines")
    p.add_argument(
        "--outputs", type=Path, help="with --format: write each frame's answer as DIR/000000.<ext>"
    )
    p.add_argument("--alpha", type=float, default=0.5, help="overlay: mask opacity (default 0.5)")
    p.add_argument("--inflight", type=int, default=4, help="frames in flight at most (default 4)")
    p.add_argument("--frame-codec", choices=FRAME_CODECS, default="png", help="how decoded frames are sent")
    p.add_argument("--rate", type=Fraction, default=Fraction(25), help="a folder's frames per second")
    live = p.add_mutually_exclusive_group()
    live.add_argument(
        "--live", action="store_true", help="treat SOURCE as live (a file: replayed in real time)"
    )
    live.add_argument("--no-live", action="store_true", help="every frame of a stream, however late")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line, only the summary")
    return p


def _writers(args: argparse.Namespace, description: dict[str, object]) -> list[writers.Writer]:
    classes = description.get("classes")
    palette = writers.palette_table(
        classes if isinstance(classes, list) else [], int(str(description.get("num_labels", 0)))
    )
    out: list[writers.Writer] = []
    if args.outputs:
        out.append(writers.AnswerFolder(args.outputs))
    if args.overlay:
        out.append(writers.OverlayVideo(args.overlay, palette, args.alpha))
    if args.mask_video:
        out.append(writers.MaskVideo(args.mask_video, sixteen_bit=description.get("mask_dtype") == "uint16"))
    if args.masks:
        out.append(writers.AnswerFolder(args.masks))
    if args.stats:
        out.append(writers.StatsLines(args.stats))
    return out


@contextlib.contextmanager
def _frames(args: argparse.Namespace) -> Iterator[tuple[Iterator[Frame], Newest | None, int | None]]:
    """The source's frames, the live wrapper (when live) and the frame count (when known)."""
    if Path(args.source).is_dir():
        files = expand([Path(args.source)])
        yield file_frames(files, args.rate), None, len(files)
        return
    with decode.open_source(args.source) as container:
        frames = decode.decoded(container)
        total = container.streams.video[0].frames or None
        live = (decode.is_live(args.source) or args.live) and not args.no_live
        if not live:
            yield frames, None, total
            return
        newest = Newest(frames if decode.is_live(args.source) else paced(frames))
        try:
            yield iter(newest), newest, None  # how many will be answered is not known
        finally:
            newest.close()


def run(args: argparse.Namespace) -> int:
    request = Request(args.mode, args.model, "raw", args.frame_codec, max(1, args.inflight), asked(args))
    with (
        SegformerClient(server_url(args.url), timeout=args.timeout) as client,
        _frames(args) as (frames, newest, total),
    ):
        description = client.model(args.model)
        outputs = _writers(args, description)
        progress = Progress(total, enabled=not args.quiet, skipped=lambda: newest.skipped if newest else 0)
        stopping = threading.Event()
        previous = signal.signal(signal.SIGINT, _first_stops_second_raises(stopping))
        interrupted = False
        try:
            for frame, seg in segment_frames(client, _until(frames, stopping), request):
                latency = frame_latency(frame)
                progress.add(latency, seg.ok)
                for writer in outputs:
                    writer.write(frame, seg, latency)
        except KeyboardInterrupt:  # a second Ctrl-C: stop at once (the files are still closed)
            interrupted = True
        finally:
            interrupted = interrupted or stopping.is_set()
            progress.close()
            for writer in outputs:  # a Ctrl-C now only sets ``stopping``: the files are closed whole
                writer.close()
            signal.signal(signal.SIGINT, previous)
    print(("interrupted: " if interrupted else "") + progress.summary())
    if newest is not None and newest.error is not None:
        print(f"{PROG}: the source failed: {newest.error}", file=sys.stderr)
        return 2
    return 1 if progress.failed else 0


def _first_stops_second_raises(stopping: threading.Event) -> Callable[[int, FrameType | None], None]:
    """Ctrl-C: the first stops taking frames (those in flight are answered and written), a second one
    raises ``KeyboardInterrupt``; the outputs are closed either way."""

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if stopping.is_set():
            raise KeyboardInterrupt
        stopping.set()

    return on_sigint


def _until(frames: Iterator[Frame], stopping: threading.Event) -> Iterator[Frame]:
    for frame in frames:
        if stopping.is_set():
            return
        yield frame


def frame_latency(frame: Frame) -> float:
    """From the frame's capture (a live source) or decoding (a file) to its answer, in seconds."""
    return time.perf_counter() - frame.captured


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if bool(args.format) != bool(args.outputs):
        parser.error("--format and --outputs go together (the answers in that format, one file a frame)")
    if args.format and (args.overlay or args.masks or args.mask_video):
        parser.error("--overlay, --masks and --mask-video need the label mask, which --format replaces")
    try:
        return run(args)
    except SegmentationError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as err:  # av.error.* are OSError/ValueError subclasses
        print(f"{PROG}: {args.source}: {err}", file=sys.stderr)
        return 2
