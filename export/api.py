"""``export_onnx``: checkpoint -> verified serving ONNX graph (docs/export.md, docs/CONTRACT.md §3)."""

from __future__ import annotations

import copy
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import onnx
import torch

from contract.graph import MASK, MIN_OPSET, mask_dtype_for, wrap_network
from contract.labels import LabelSpec
from contract.metadata import build_metadata, package_version, set_metadata
from contract.upsample import DEFAULT_TOPK, DEFAULT_UPSAMPLE
from export.fp16 import convert_to_fp16
from export.trace import MAX_OPSET, export_network
from export.verify import DEFAULT_CASES, Case, verify
from model.loading import ModelInfo, load_segformer
from model.segformer import SegFormer

DEFAULT_OPSET = 17
Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@contextmanager
def _stage(log: Log, what: str) -> Iterator[list[str]]:
    """Time a stage; details appended to the yielded list go on its progress line."""
    details: list[str] = []
    start = time.perf_counter()
    yield details
    extra = f" ({', '.join(details)})" if details else ""
    log(f"{what}: {time.perf_counter() - start:.1f} s{extra}")


def export_onnx(
    source: str | Path,
    output: str | Path,
    *,
    num_labels: int | None = None,
    labels: LabelSpec | None = None,
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    outputs: Sequence[str] = (MASK,),
    inference_size: tuple[int, int] | None = None,
    upsample: str = DEFAULT_UPSAMPLE,
    topk: int = DEFAULT_TOPK,
    verify_graph: bool = True,
    cases: Sequence[Case] = DEFAULT_CASES,
    log: Log = _quiet,
) -> Path:
    """Load ``source`` (anything ``load_segformer`` accepts: HF folder or hub id, NVlabs ``.pth``,
    ``random:b0``..``random:b5``) and export it to ``output``; see ``export_model``."""
    with _stage(log, f"load {source}") as details:
        net, info = load_segformer(source, num_labels=num_labels, labels=labels)
        details.append(f"{info.name}, {info.variant}, {info.num_labels} classes")
    return export_model(
        net,
        info,
        output,
        opset=opset,
        fp16=fp16,
        outputs=outputs,
        inference_size=inference_size,
        upsample=upsample,
        topk=topk,
        verify_graph=verify_graph,
        cases=cases,
        log=log,
    )


def export_model(
    net: SegFormer,
    info: ModelInfo,
    output: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    outputs: Sequence[str] = (MASK,),
    inference_size: tuple[int, int] | None = None,
    upsample: str = DEFAULT_UPSAMPLE,
    topk: int = DEFAULT_TOPK,
    verify_graph: bool = True,
    cases: Sequence[Case] = DEFAULT_CASES,
    log: Log = _quiet,
) -> Path:
    """Export a loaded model to ``output`` and return its path.

    The file is written atomically and only after verification passed (``verify_graph=False`` skips
    it): a failure raises ``export.VerificationError`` and leaves ``output`` untouched.
    """
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"opset must be between {MIN_OPSET} and {MAX_OPSET}, got {opset}")
    output = Path(output)
    outputs = list(outputs)
    mask_dtype = mask_dtype_for(info.num_labels)
    precision = "fp16" if fp16 else "fp32"
    with _stage(log, "trace to ONNX") as details:
        fused = copy.deepcopy(net).fuse_for_inference()
        network = export_network(fused, opset)
        details.append(f"opset {opset}, {len(network.graph.node)} nodes")
    if fp16:
        with _stage(log, "convert to fp16 (LayerNorm, Softmax, reductions stay fp32)"):
            network = convert_to_fp16(network)
    with _stage(log, "add normalisation, upsampling, argmax, metadata") as details:
        model = wrap_network(
            network,
            image_mean=info.image_mean,
            image_std=info.image_std,
            outputs=outputs,
            mask_dtype=mask_dtype,
            upsample=upsample,
            topk=topk,
        )
        versions = {
            "segformer_serve": package_version(),
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "opset": opset,
        }
        set_metadata(
            model,
            build_metadata(
                name=info.name,
                variant=info.variant,
                id2label=info.id2label,
                palette=info.palette,
                image_mean=info.image_mean,
                image_std=info.image_std,
                inference_size=inference_size or info.image_size,
                outputs=outputs,
                mask_dtype=mask_dtype,
                precision=precision,
                source=info.source,
                source_sha256=info.source_sha256,
                versions=versions,
            ),
        )
        how = f"topk K={topk}" if upsample == "topk" else upsample
        details.append(f"outputs {outputs}, mask {mask_dtype}, {precision}, upsample {how}")
    if verify_graph:
        with _stage(log, f"verify against PyTorch ({precision})"):
            verify(
                model,
                net,
                image_mean=info.image_mean,
                image_std=info.image_std,
                precision=precision,
                cases=cases,
                log=log,
            )
    else:
        log("verification skipped (--no-verify)")
    with _stage(log, f"write {output}") as details:
        _write_atomically(model, output)
        details.append(f"{output.stat().st_size / 2**20:.1f} MiB")
    return output


def _write_atomically(model: onnx.ModelProto, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(fd)
    try:
        onnx.save_model(model, tmp)
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
