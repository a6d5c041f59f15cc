"""``segformer-client``: segment image files or folders of frames over REST or gRPC, write PNG masks.

    segformer-client street.jpg                                   # REST on http://127.0.0.1:8000
    segformer-client --url grpc://127.0.0.1:50051 frames/ -o masks/   # a folder: one gRPC stream
    segformer-client --url grpc://127.0.0.1:50051 --info          # the served model
    segformer-client --format polygons --classes road,sidewalk street.jpg   # another format (below)

Each input ``NAME.ext`` gives ``OUT/NAME.png`` (the label mask: pixel value = class id). A folder's
images (sorted by name) are sent as one ordered stream (gRPC ``StreamSegment``; REST: concurrent
requests). ``--format NAME`` asks for one of the server's formats instead (docs/outputs.md: json,
overlay, raw, rle, polygons, confidence, probability; the server lists them when the name is wrong),
one request per image, written as ``OUT/NAME`` + a suffix from its content type (``.geojson``,
``.rle.json``, ``.png``...). Exit status: 0 when every image was segmented, 1 when some failed, 2 on a
call failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from client.client import SegformerClient
from client.outputs import OutputRequest
from client.types import IMAGE_SUFFIXES, Segmentation, SegmentationError

DEFAULT_URL = "http://127.0.0.1:8000"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segformer-client", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("inputs", nargs="*", type=Path, help="image files and/or folders of frames")
    parser.add_argument(
        "--url",
        default=os.environ.get("SEGFORMER_URL", DEFAULT_URL),
        help=f"http(s)://host:port: REST, grpc://host:port: gRPC (env SEGFORMER_URL, default {DEFAULT_URL})",
    )
    parser.add_argument(
        "-o", "--out", type=Path, default=Path("masks"), help="output folder (default masks/)"
    )
    parser.add_argument("--mode", choices=("resize", "native", "slide"), default=None, help="inference mode")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    parser.add_argument("--inflight", type=int, default=8, help="REST: concurrent requests for a folder")
    parser.add_argument("--format", help="one of the server's output formats (default: the PNG mask)")
    parser.add_argument("--classes", help="comma-separated class ids or labels: the others are background")
    parser.add_argument("--tolerance", type=float, default=0.0, help="polygons: simplification (pixels)")
    parser.add_argument("--min-area", type=float, default=0.0, help="polygons: smallest ring (pixels)")
    parser.add_argument("--info", action="store_true", help="print the served model as JSON and exit")
    parser.add_argument("-q", "--quiet", action="store_true", help="only the summary line")
    return parser


def _frames(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _describe(seg: Segmentation, top: int = 3) -> str:
    if seg.error is not None:
        return f"ERROR {seg.error}"
    largest = sorted(seg.classes, key=lambda c: -c.pixels)[:top]
    classes = ", ".join(f"{c.label} {100 * c.fraction:.1f}%" for c in largest)
    more = f" (+{len(seg.classes) - top})" if len(seg.classes) > top else ""
    return f"{seg.width}x{seg.height}, {len(seg.classes)} classes: {classes}{more}"


def _results(
    client: SegformerClient, path: Path, args: argparse.Namespace
) -> Iterator[tuple[Path, Segmentation]]:
    if path.is_dir():
        frames = _frames(path)
        yield from zip(frames, client.stream(frames, mode=args.mode, inflight=args.inflight), strict=True)
        return
    try:
        yield path, client.segment(path, mode=args.mode)
    except SegmentationError as err:
        if err.code == "UNAVAILABLE" and not err.error:  # no server answered: not this image's fault
            raise
        yield path, Segmentation(error=err)


def _outputs(client: SegformerClient, path: Path, args: argparse.Namespace) -> Iterator[tuple[Path, str]]:
    """``--format``: each image's answer written to ``args.out``; yields (image, "" or the error)."""
    classes = tuple(c.strip() for c in (args.classes or "").split(",") if c.strip())
    request = OutputRequest(args.format, classes, args.tolerance, args.min_area)
    for source in _frames(path) if path.is_dir() else [path]:
        try:
            output = client.output(source, request, mode=args.mode)
        except SegmentationError as err:
            if err.code == "UNAVAILABLE" and not err.error:
                raise
            yield source, f"ERROR {err}"
            continue
        target = args.out / f"{source.stem}{output.suffix}"
        target.write_bytes(output.data)
        yield source, ""
        if not args.quiet:
            print(f"{source}: {args.format} {output.content_type}, {len(output.data)} bytes -> {target}")


def run(args: argparse.Namespace) -> int:
    """Segment ``args.inputs``; print one line per image and a summary; return the exit status."""
    with SegformerClient(args.url, timeout=args.timeout) as client:
        if args.info:
            print(json.dumps(client.model(), indent=2))
            return 0
        args.out.mkdir(parents=True, exist_ok=True)
        done = failed = 0
        start = time.perf_counter()
        try:
            for path in args.inputs:
                if args.format:
                    for source, error in _outputs(client, path, args):
                        done, failed = done + (not error), failed + bool(error)
                        if error:
                            print(f"{source}: {error}", file=sys.stderr)
                    continue
                for source, seg in _results(client, path, args):
                    if seg.ok:
                        (args.out / f"{source.stem}.png").write_bytes(seg.mask_png())
                        done += 1
                    else:
                        failed += 1
                    if not args.quiet or not seg.ok:
                        print(f"{source}: {_describe(seg)}", file=sys.stdout if seg.ok else sys.stderr)
        except SegmentationError as err:
            print(f"segformer-client: {client.url}: {err}", file=sys.stderr)
            return 2
    elapsed = time.perf_counter() - start
    rate = (done + failed) / elapsed if elapsed > 0 else 0.0
    print(
        f"{done} segmented, {failed} failed in {elapsed:.2f} s ({rate:.1f} images/s) over "
        f"{client.transport.upper()} {client.url}; {args.format or 'masks'} in {args.out}/"
    )
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.inputs and not args.info:
        _parser().error("give image files or folders (or --info)")
    missing = [str(p) for p in args.inputs if not p.exists()]
    if missing:
        _parser().error(f"not found: {', '.join(missing)}")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
