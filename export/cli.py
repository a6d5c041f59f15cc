"""``segformer-export SOURCE -o model.onnx``: the command line over ``export.api.export_onnx``.

Exit status: 0 exported (and verified unless ``--no-verify``); 1 verification failed (nothing written);
2 bad arguments or unreadable checkpoint; 3 ONNX Runtime here cannot run the graph (nothing written).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence

from contract.graph import LOGITS, MASK, MIN_OPSET
from contract.upsample import DEFAULT_TOPK, DEFAULT_UPSAMPLE, UPSAMPLE_MODES
from export.api import export_onnx
from export.verify import DEFAULT_CASES, Case, RuntimeCannotRun, VerificationError
from model.checkpoints import CheckpointError


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)[xX,](\d+)", text.strip())
    if not match or 0 in (int(match[1]), int(match[2])):
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 512x512, got {text!r}")
    return int(match[1]), int(match[2])


def _outputs(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names not in ([MASK], [MASK, LOGITS], [LOGITS, MASK]):
        raise argparse.ArgumentTypeError(f"expected 'mask' or 'mask,logits', got {text!r}")
    return sorted(names, key=[MASK, LOGITS].index)


def _cases(text: str) -> list[Case]:
    cases = []
    for item in text.split(","):
        match = re.fullmatch(r"(\d+)[xX](\d+)[xX](\d+)", item.strip())
        if not match or 0 in (int(match[1]), int(match[2]), int(match[3])):
            raise argparse.ArgumentTypeError(f"expected NxHxW[,NxHxW...] such as 2x333x517, got {item!r}")
        cases.append(Case(int(match[1]), int(match[2]), int(match[3])))
    return cases


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segformer-export",
        description="Export a SegFormer checkpoint to one verified ONNX graph: uint8 NHWC images of any "
        "batch/height/width in, label mask (and optionally logits) out. See docs/export.md.",
    )
    parser.add_argument(
        "source",
        help="Hugging Face folder or hub id, NVlabs/mmseg .pth, or random:b0..random:b5",
    )
    parser.add_argument("-o", "--output", default="model.onnx", help="output file (default: model.onnx)")
    parser.add_argument("--num-labels", type=int, help="number of classes (for random:bN sources)")
    parser.add_argument("--labels", help="label file (or built-in set name) overriding the checkpoint's")
    parser.add_argument("--opset", type=int, default=17, help=f"ONNX opset, >= {MIN_OPSET} (default 17)")
    parser.add_argument(
        "--fp16",
        action="store_true",
        help="fp16 weights and activations; LayerNorm, Softmax, reductions, normalisation and "
        "upsampling+argmax stay fp32",
    )
    parser.add_argument("--outputs", type=_outputs, default=[MASK], help="'mask' (default) or 'mask,logits'")
    parser.add_argument(
        "--inference-size",
        type=_size,
        help="default inference size HxW recorded in the metadata (default: the checkpoint's, or 512x512)",
    )
    parser.add_argument(
        "--upsample",
        choices=UPSAMPLE_MODES,
        default=DEFAULT_UPSAMPLE,
        help="how the mask is computed from the logits: 'full' resizes every class to the output size; "
        f"'topk' only the K best classes of each pixel's 4 neighbours (default: {DEFAULT_UPSAMPLE})",
    )
    parser.add_argument(
        "--topk",
        type=int,
        default=DEFAULT_TOPK,
        help=f"K for --upsample topk (default: {DEFAULT_TOPK})",
    )
    parser.add_argument(
        "--verify-shapes",
        type=_cases,
        default=list(DEFAULT_CASES),
        help="batch x height x width shapes to verify at (default: 2x512x512 -> 480x640, 2x333x517, "
        "1x1024x2048)",
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="skip the ONNX Runtime vs PyTorch verification"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()

    def log(line: str) -> None:
        print(f"[segformer-export] {line}", file=sys.stderr, flush=True)

    try:
        path = export_onnx(
            args.source,
            args.output,
            num_labels=args.num_labels,
            labels=args.labels,
            opset=args.opset,
            fp16=args.fp16,
            outputs=args.outputs,
            inference_size=args.inference_size,
            upsample=args.upsample,
            topk=args.topk,
            verify_graph=not args.no_verify,
            cases=args.verify_shapes,
            log=log,
        )
    except RuntimeCannotRun as exc:
        log(f"NOT VERIFIED, nothing written: {exc}")
        log("this graph needs another execution provider (e.g. CUDA); rerun with --no-verify to keep it")
        return 3
    except VerificationError as exc:
        log(f"VERIFICATION FAILED, nothing written: {exc}")
        return 1
    except (CheckpointError, ValueError, OSError) as exc:
        log(f"error: {exc}")
        return 2
    log(f"done in {time.perf_counter() - start:.1f} s")
    print(path)
    return 0
