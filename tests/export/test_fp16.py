"""``--fp16``: fragile ops stay fp32, ONNX Runtime CPU runs it, masks agree with fp32 on >= 99.5 %."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from PIL import Image

from export.api import export_model
from export.fp16 import KEEP_FP32
from export.verify import Case
from model.loading import ModelInfo, load_segformer
from model.segformer import SegFormer
from tests.export.conftest import session
from tests.reference import agreement, resize_like_processor


@pytest.fixture(scope="module")
def real_b0(real_weights_dir: Path) -> tuple[SegFormer, ModelInfo]:
    return load_segformer(real_weights_dir)


@pytest.fixture(scope="module")
def real_fp16_onnx(real_b0: tuple[SegFormer, ModelInfo], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Exported and verified (mask agreement with the fp32 PyTorch model >= 99.5 %)."""
    net, info = real_b0
    out = tmp_path_factory.mktemp("fp16") / "real_b0_fp16.onnx"
    cases = [Case(2, 512, 512, (480, 640)), Case(1, 333, 517)]
    return export_model(net, info, out, fp16=True, outputs=["mask", "logits"], cases=cases)


def test_fragile_ops_stay_fp32(real_fp16_onnx: Path) -> None:
    model = onnx.shape_inference.infer_shapes(onnx.load(str(real_fp16_onnx)))
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
    types |= {t.name: t.data_type for t in graph.initializer}
    kept = [n for n in graph.node if n.op_type in {"LayerNormalization", "Softmax"}]
    assert len(kept) > 10
    for node in kept:
        assert {types[name] for name in node.input if name} == {TensorProto.FLOAT}, node.name
    normalisation = {"norm_scale", "norm_bias"}  # applied to the uint8 image in fp32
    assert {types[name] for name in normalisation} == {TensorProto.FLOAT}
    weights = [t for t in graph.initializer if len(t.dims) >= 2 and t.name not in normalisation]
    assert weights and all(t.data_type == TensorProto.FLOAT16 for t in weights)
    convs = [n for n in graph.node if n.op_type in {"Conv", "MatMul"}]
    assert convs and all(types[n.output[0]] == TensorProto.FLOAT16 for n in convs)
    assert types["logits"] == TensorProto.FLOAT16
    upsample = [n for n in graph.node if n.op_type in {"TopK", "ArgMax"}]  # only in the post-processing
    assert len(upsample) == 2 and all(types[n.input[0]] == TensorProto.FLOAT for n in upsample)
    assert "LayerNormalization" in KEEP_FP32 and "Softmax" in KEEP_FP32


def test_fp16_masks_agree_with_fp32_on_real_photos(
    real_fp16_onnx: Path, real_b0_onnx: Path, real_photos: list[Path]
) -> None:
    fp16, fp32 = session(real_fp16_onnx), session(real_b0_onnx)
    scores = []
    for path in real_photos:
        photo = Image.open(path)
        feeds = {
            "image": resize_like_processor(photo, (512, 512))[None],
            "output_size": np.array([photo.height, photo.width], dtype=np.int64),
        }
        scores.append(agreement(fp16.run(["mask"], feeds)[0], fp32.run(["mask"], feeds)[0]))
    print("fp16 vs fp32 mask agreement:", [f"{100 * s:.3f} %" for s in scores])
    assert min(scores) >= 0.995
