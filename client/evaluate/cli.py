"""``segformer-eval``: the mIoU of a served model on a labelled folder, computed as mmseg computes it.

    segformer-eval http://127.0.0.1:8000 --images ADE/images/validation --labels ADE/annotations/validation
    segformer-eval grpc://127.0.0.1:50051 --images leftImg8bit/val --labels gtFine/val --dataset cityscapes
    segformer-eval model.onnx --images DIR --labels DIR --json fp32.json      # a private local server
    segformer-eval model.onnx --images DIR --labels DIR --serve-arg=--export-args=--fp16 --json fp16.json
    segformer-eval compare fp32.json fp16.json                                # per-class differences

TARGET is a URL (http(s)://host:port: REST, grpc://host:port: gRPC) or anything ``segformer-serve
--model`` accepts (.onnx, Hugging Face folder, .pth, hub id, random:bN): then a private server is
started on 127.0.0.1 for the run and stopped after it. Exit status: 0 done, 2 on any error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from client.client import SegformerClient
from client.evaluate import report
from client.evaluate.dataset import Pair, pairs
from client.evaluate.labels import DATASETS, LabelError
from client.evaluate.local import LocalServer
from client.evaluate.runner import EvalError, evaluate
from client.types import SegmentationError

URL_SCHEMES = ("http://", "https://", "grpc://")
PROG = "segformer-eval"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("target", help="server URL (http://, https://, grpc://) or a model for a private server")
    p.add_argument("--images", type=Path, required=True, help="folder of images (searched recursively)")
    p.add_argument("--labels", type=Path, required=True, help="folder of annotations (same relative layout)")
    p.add_argument("--dataset", choices=DATASETS, default="ade20k", help="label convention (default ade20k)")
    p.add_argument("--label-map", type=Path, help="custom: JSON {old: new} or lines 'old new', applied first")
    p.add_argument("--reduce-zero-label", action="store_true", help="custom: 0 → ignore, k → k-1")
    p.add_argument(
        "--mode", help="inference mode sent to the server (resize, native, ...; default: the server's)"
    )
    p.add_argument("--model-name", help="a served model by name (default: the server's default model)")
    p.add_argument("--concurrency", type=int, default=4, help="REST: requests in flight (default 4)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    p.add_argument("--json", type=Path, help="write the run (metrics and pixel counts) as JSON")
    p.add_argument("--all-classes", action="store_true", help="also list classes in neither labels nor masks")
    p.add_argument("--serve-arg", action="append", default=[], help="model TARGET: a segformer-serve flag")
    p.add_argument("--grpc", action="store_true", help="model TARGET: evaluate over gRPC instead of REST")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    return p


def _compare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"{PROG} compare", description="B minus A, per class, by |ΔIoU|")
    p.add_argument("a", type=Path, help="segformer-eval --json of run A")
    p.add_argument("b", type=Path, help="segformer-eval --json of run B")
    p.add_argument("--top", type=int, default=None, help="only the N classes that changed most")
    return p


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace, url: str, found: list[Pair]) -> int:
    """Evaluate ``found`` on ``url``; print the table (and write ``--json``)."""
    with SegformerClient(url, timeout=args.timeout) as client:
        try:
            description = client.model(args.model_name)
        except SegmentationError as err:
            which = f"model {args.model_name!r}" if args.model_name else "the served model"
            return _fail(f"{url}: cannot describe {which}: {err}")
        evaluation = evaluate(
            client,
            found,
            description,
            mode=args.mode,
            model=args.model_name,
            concurrency=max(1, args.concurrency),
            progress=not args.quiet,
        )
    body = report.to_json(evaluation)
    print(report.table(body, all_classes=args.all_classes))
    if args.json:
        report.write_json(evaluation, args.json)
        print(f"written {args.json}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    found = pairs(  # bad folders fail here, before any server is asked or started
        args.images, args.labels, args.dataset, label_map=args.label_map, zero_label=args.reduce_zero_label
    )
    if args.target.startswith(URL_SCHEMES):
        return run(args, args.target, found)
    if not args.quiet:
        print(f"starting a local segformer-serve for {args.target} ...", file=sys.stderr)
    with LocalServer(args.target, args.serve_arg, grpc=args.grpc) as server:
        return run(args, server.url, found)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["compare"]:
            cargs = _compare_parser().parse_args(argv[1:])
            print(report.compare(report.read_json(cargs.a), report.read_json(cargs.b), top=cargs.top))
            return 0
        return _evaluate(_parser().parse_args(argv))
    except (LabelError, EvalError, SegmentationError, ValueError, RuntimeError) as err:
        return _fail(str(err))


if __name__ == "__main__":
    sys.exit(main())
