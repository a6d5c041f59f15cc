"""The exported graph against PyTorch: dynamic batch/height/width, output_size, the I/O contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from export.verify import synthetic_images, torch_reference
from model.loading import ModelInfo
from model.segformer import SegFormer
from tests.export.conftest import session

LOGITS_TOL = 1e-4
MASK_TOL = 0.001

SHAPES = [
    (1, 512, 512),
    (3, 333, 517),  # odd size, batch 3
    (1, 97, 611),  # not a multiple of 4 or 32, wide
]


@pytest.mark.parametrize(("batch", "height", "width"), SHAPES)
def test_matches_pytorch_at_any_batch_and_size(
    random_b0: tuple[SegFormer, ModelInfo], random_b0_logits_onnx: Path, batch: int, height: int, width: int
) -> None:
    net, info = random_b0
    image = synthetic_images(batch, height, width, seed=height)
    mask, logits = session(random_b0_logits_onnx).run(["mask", "logits"], {"image": image})
    ref_logits, ref_mask = torch_reference(net, image, info.image_mean, info.image_std, (height, width))
    assert logits.shape == ref_logits.shape == (batch, 150, -(-height // 4), -(-width // 4))
    assert mask.shape == (batch, height, width) and mask.dtype == np.uint8
    assert np.abs(logits - ref_logits).max() <= LOGITS_TOL
    assert np.mean(mask != ref_mask) <= MASK_TOL


@pytest.mark.parametrize("output_size", [(480, 640), (1024, 683), (0, 300), (77, 0)])
def test_output_size_override(
    random_b0: tuple[SegFormer, ModelInfo], random_b0_logits_onnx: Path, output_size: tuple[int, int]
) -> None:
    net, info = random_b0
    image = synthetic_images(1, 256, 256, seed=1)
    feeds = {"image": image, "output_size": np.asarray(output_size, dtype=np.int64)}
    (mask,) = session(random_b0_logits_onnx).run(["mask"], feeds)
    expected_hw = tuple(o or i for o, i in zip(output_size, (256, 256), strict=True))
    _, ref_mask = torch_reference(net, image, info.image_mean, info.image_std, expected_hw)
    assert mask.shape == (1, *expected_hw)
    assert np.mean(mask != ref_mask) <= MASK_TOL


def test_output_size_default_is_input_size(random_b0_onnx: Path) -> None:
    image = synthetic_images(1, 200, 300)
    sess = session(random_b0_onnx)
    (default,) = sess.run(["mask"], {"image": image})
    (explicit,) = sess.run(["mask"], {"image": image, "output_size": np.array([200, 300], dtype=np.int64)})
    (zeros,) = sess.run(["mask"], {"image": image, "output_size": np.zeros(2, dtype=np.int64)})
    assert default.shape == (1, 200, 300)
    np.testing.assert_array_equal(default, explicit)
    np.testing.assert_array_equal(default, zeros)


def test_shared_fixture_graph_is_the_seeded_random_b0(
    random_b0: tuple[SegFormer, ModelInfo], random_b0_onnx: Path
) -> None:
    net, info = random_b0
    image = synthetic_images(1, 128, 160, seed=3)
    (mask,) = session(random_b0_onnx).run(None, {"image": image})
    _, ref_mask = torch_reference(net, image, info.image_mean, info.image_std, (128, 160))
    assert np.mean(mask != ref_mask) <= MASK_TOL


def _dims(value: onnx.ValueInfoProto) -> list[str | int]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_io_contract(random_b0_onnx: Path, random_b0_logits_onnx: Path) -> None:
    model = onnx.load(str(random_b0_onnx))
    graph = model.graph
    assert model.ir_version >= 4
    inputs = {v.name: v for v in graph.input}
    assert list(inputs) == ["image", "output_size"]
    assert inputs["image"].type.tensor_type.elem_type == TensorProto.UINT8
    assert _dims(inputs["image"]) == ["batch", "height", "width", 3]
    assert inputs["output_size"].type.tensor_type.elem_type == TensorProto.INT64
    assert _dims(inputs["output_size"]) == [2]
    (default,) = [t for t in graph.initializer if t.name == "output_size"]
    assert onnx.numpy_helper.to_array(default).tolist() == [0, 0]
    assert [o.name for o in graph.output] == ["mask"]
    assert graph.output[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert _dims(graph.output[0]) == ["batch", "out_height", "out_width"]

    with_logits = onnx.load(str(random_b0_logits_onnx)).graph.output
    assert [o.name for o in with_logits] == ["mask", "logits"]
    assert with_logits[1].type.tensor_type.elem_type == TensorProto.FLOAT
    assert _dims(with_logits[1]) == ["batch", 150, "logits_height", "logits_width"]
