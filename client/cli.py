"""``segformer-client``: segment image files or folders of frames over REST or gRPC, write PNG masks.

    segformer-client street.jpg                                   # REST on http://127.0.0.1:8000
    segformer-client grpc://127.0.0.1:50051 frames/ -o masks/     # a folder: one gRPC stream
    segformer-client --url grpc://127.0.0.1:50051 --model ade a.png   # a named model
    segformer-client grpc://127.0.0.1:50051 --info                # the served model
    segformer-client video clip.mp4 --url grpc://127.0.0.1:50051 --overlay out.mp4   # see `video -h`

Each input ``NAME.ext`` gives ``OUT/NAME.png`` (the label mask: pixel value = class id), or with
``--format`` the server's answer in that format (``OUT/NAME.geojson`` for polygons...). The images
(a folder's sorted by name) go through the same ordered stream as a video's frames (``client.pipeline``:
gRPC ``StreamSegment``; REST: concurrent requests). The server URL is ``--url`` or the first argument.
Exit status: 0 when every image was segmented, 1 when some failed, 2 on a call failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from client.client import SegformerClient
from client.frames import expand, file_frames
from client.pipeline import Request, segment_frames
from client.types import Ask, Segmentation, SegmentationError

DEFAULT_URL = "http://127.0.0.1:8000"
URL_SCHEMES = ("http://", "https://", "grpc://")


def add_request_options(parser: argparse.ArgumentParser) -> None:
    """``--url``, ``--model``, ``--mode``, ``--format`` and its parameters, ``--timeout``: the same for
    images and videos."""
    parser.add_argument(
        "--url",
        default=None,
        help=f"http(s)://host:port: REST, grpc://host:port: gRPC (env SEGFORMER_URL, default {DEFAULT_URL})",
    )
    parser.add_argument("--model", default=None, help="a served model by name (default: the server's)")
    parser.add_argument("--mode", choices=("resize", "native", "slide"), default=None, help="inference mode")
    parser.add_argument(
        "--format",
        default=None,
        help="an output format of the server's (polygons, rle, confidence...: docs/outputs.md), as named",
    )
    parser.add_argument(
        "--classes",
        default=None,
        help="only these classes, ids or names, comma-separated (the others: the background value)",
    )
    parser.add_argument("--tolerance", type=float, default=None, help="polygons: simplification, pixels")
    parser.add_argument("--min-area", type=float, default=None, help="polygons: the smallest ring, pixels")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")


def asked(args: argparse.Namespace) -> Ask | None:
    """``--format``, ``--classes``, ``--tolerance``, ``--min-area`` as one ``Ask`` (None: none given)."""
    classes = tuple(c.strip() for c in (args.classes or "").split(",") if c.strip())
    ask = Ask(args.format or None, classes, args.tolerance, args.min_area)
    return None if ask == Ask() else ask


def server_url(given: str | None) -> str:
    return given or os.environ.get("SEGFORMER_URL") or DEFAULT_URL


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segformer-client", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("inputs", nargs="*", help="[URL] image files and/or folders of frames")
    add_request_options(parser)
    parser.add_argument(
        "-o", "--out", type=Path, default=Path("masks"), help="output folder (default masks/)"
    )
    parser.add_argument("--inflight", type=int, default=8, help="frames in flight (default 8)")
    parser.add_argument("--info", action="store_true", help="print the served model as JSON and exit")
    parser.add_argument("-q", "--quiet", action="store_true", help="only the summary line")
    return parser


def write_answer(folder: Path, name: str, seg: Segmentation) -> Path:
    """``folder/NAME.png`` (the label mask), or the asked format's answer as ``NAME.<suffix>``."""
    path = folder / f"{name}{seg.output.suffix if seg.output else '.png'}"
    path.write_bytes(seg.output.data if seg.output else seg.mask_png())
    return path


def describe(seg: Segmentation, top: int = 3) -> str:
    if seg.error is not None:
        return f"ERROR {seg.error}"
    if seg.output is not None:
        return f"{seg.output.format}, {len(seg.output.data)} bytes ({seg.output.content_type})"
    largest = sorted(seg.classes, key=lambda c: -c.pixels)[:top]
    classes = ", ".join(f"{c.label} {100 * c.fraction:.1f}%" for c in largest)
    more = f" (+{len(seg.classes) - top})" if len(seg.classes) > top else ""
    return f"{seg.width}x{seg.height}, {len(seg.classes)} classes: {classes}{more}"


def run(args: argparse.Namespace, url: str, inputs: list[Path]) -> int:
    """Segment ``inputs``; print one line per image and a summary; return the exit status."""
    request = Request(mode=args.mode, model=args.model, inflight=args.inflight, output=asked(args))
    with SegformerClient(url, timeout=args.timeout) as client:
        try:
            if args.info:
                print(json.dumps(client.model(args.model), indent=2))
                return 0
            if args.model:
                client.model(args.model)  # an unknown name fails here, once, not for every image
            args.out.mkdir(parents=True, exist_ok=True)
            done = failed = 0
            start = time.perf_counter()
            for frame, seg in segment_frames(client, file_frames(expand(inputs)), request):
                if seg.ok:
                    write_answer(args.out, frame.name, seg)
                    done += 1
                else:
                    failed += 1
                if not args.quiet or not seg.ok:
                    print(f"{frame.origin}: {describe(seg)}", file=sys.stdout if seg.ok else sys.stderr)
        except SegmentationError as err:
            print(f"segformer-client: {client.url}: {err}", file=sys.stderr)
            return 2
    elapsed = time.perf_counter() - start
    rate = (done + failed) / elapsed if elapsed > 0 else 0.0
    print(
        f"{done} segmented, {failed} failed in {elapsed:.2f} s ({rate:.1f} images/s) over "
        f"{client.transport.upper()} {client.url}; masks in {args.out}/"
    )
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["video"]:
        from client.video.cli import main as video_main  # PyAV only for videos

        return video_main(argv[1:])
    parser = _parser()
    args = parser.parse_intermixed_args(argv)  # the URL first, options, then the images
    inputs = list(args.inputs)
    if inputs and inputs[0].startswith(URL_SCHEMES):
        if args.url is not None:
            parser.error(f"two server URLs: {inputs[0]} and --url {args.url}")
        args.url = inputs.pop(0)
    if not inputs and not args.info:
        parser.error("give image files or folders (or --info)")
    missing = [p for p in inputs if not Path(p).exists()]
    if missing:
        parser.error(f"not found: {', '.join(missing)}")
    return run(args, server_url(args.url), [Path(p) for p in inputs])


if __name__ == "__main__":
    sys.exit(main())
