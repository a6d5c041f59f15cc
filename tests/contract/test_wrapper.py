"""``contract.graph.wrap_network`` on a tiny hand-made network (no tracing): pre/post-processing alone."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from contract.graph import mask_dtype_for, wrap_network
from export.fp16 import convert_to_fp16

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def tiny_network(classes: int, seed: int = 0) -> onnx.ModelProto:
    """pixel_values [N,3,H,W] -> 1x1 conv with stride 4 -> logits [N, classes, ceil(H/4), ceil(W/4)]."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(classes, 3, 1, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["pixel_values", "w"], ["out"], strides=[4, 4])],
        "tiny",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", classes, "h4", "w4"])],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    onnx.checker.check_model(model, full_check=True)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return sess.run(["mask", "logits"], feeds)


@pytest.mark.parametrize(
    ("classes", "dtype", "upsample"),
    [(7, np.uint8, "full"), (7, np.uint8, "topk"), (256, np.uint8, "full"), (300, np.uint16, "topk")],
)
def test_mask_dtype_and_torch_upsampling_semantics(classes: int, dtype: type, upsample: str) -> None:
    assert mask_dtype_for(classes) == np.dtype(dtype).name
    # white-noise logits are top-K's worst case: with K = classes the candidates are all classes
    model = wrap_network(
        tiny_network(classes), image_mean=MEAN, image_std=STD, outputs=["mask", "logits"],
        mask_dtype=mask_dtype_for(classes), upsample=upsample, topk=classes,
    )  # fmt: skip
    image = np.random.default_rng(1).integers(0, 256, (2, 37, 50, 3), dtype=np.uint8)
    # logits are 10x13: upsampled in height, downsampled in width
    feeds = {"image": image, "output_size": np.array([61, 9], dtype=np.int64)}
    mask, logits = run(model, feeds)
    assert mask.dtype == dtype and mask.shape == (2, 61, 9) and logits.shape == (2, classes, 10, 13)
    # normalisation inside the graph: pixel/255, then mean/std
    x = (image.transpose(0, 3, 1, 2) / 255.0 - np.reshape(MEAN, (1, 3, 1, 1))) / np.reshape(STD, (1, 3, 1, 1))
    weight = numpy_helper.to_array(tiny_network(classes).graph.initializer[0])[:, :, 0, 0]
    expected_logits = np.einsum("kc,nchw->nkhw", weight, x[:, :, ::4, ::4])
    np.testing.assert_allclose(logits, expected_logits, atol=1e-5)
    # upsampling+argmax is torch's interpolate(bilinear, align_corners=False) + argmax
    up = F.interpolate(torch.from_numpy(logits), size=(61, 9), mode="bilinear", align_corners=False)
    assert np.mean(mask.astype(np.int64) != up.argmax(1).numpy()) <= 1e-4


def test_fp16_network_is_fed_and_read_in_fp32() -> None:
    half = convert_to_fp16(tiny_network(5))
    assert half.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    model = wrap_network(half, image_mean=MEAN, image_std=STD, outputs=["mask", "logits"])
    image = np.random.default_rng(2).integers(0, 256, (1, 40, 44, 3), dtype=np.uint8)
    mask, logits = run(model, {"image": image})
    full_mask, full_logits = run(
        wrap_network(tiny_network(5), image_mean=MEAN, image_std=STD, outputs=["mask", "logits"]),
        {"image": image},
    )
    assert logits.dtype == np.float16 and mask.shape == (1, 40, 44)
    np.testing.assert_allclose(logits.astype(np.float32), full_logits, atol=2e-2)
    assert np.mean(mask == full_mask) >= 0.99


@pytest.mark.parametrize("outputs", [["logits"], ["mask", "scores"], []])
def test_rejects_unknown_outputs(outputs: list[str]) -> None:
    with pytest.raises(ValueError, match="outputs must be"):
        wrap_network(tiny_network(3), image_mean=MEAN, image_std=STD, outputs=outputs)


def test_too_many_classes() -> None:
    with pytest.raises(ValueError, match="uint16"):
        mask_dtype_for(70000)
