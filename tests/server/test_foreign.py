"""Foreign SegFormer graphs (float NCHW pixel_values in, logits out) are wrapped into the contract."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from contract.foreign import IMAGENET_MEAN, IMAGENET_STD
from contract.spec import ModelSpec
from server.settings import Settings
from server.source import resolve_model
from tests.server.live import Served, image_bytes

CLASSES = 19


def tiny_foreign(path: Path, opset: int, classes: int = CLASSES) -> Path:
    """A stand-in "optimum-style" network: pixel_values [N,3,H,W] -> logits [N,classes,H/4,W/4]."""
    weights = np.random.default_rng(0).normal(size=(classes, 3, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["pixel_values"], ["pooled"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Conv", ["pooled", "w"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes, "h", "w"])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    onnx.save(model, path)
    return path


def test_foreign_graph_is_wrapped_cached_and_equivalent(tmp_path: Path) -> None:
    source = tiny_foreign(tmp_path / "optimum.onnx", opset=13)  # older opset: converted up
    settings = Settings(cache_dir=tmp_path / "cache")
    wrapped = resolve_model(str(source), settings)
    assert wrapped.parent == tmp_path / "cache" and resolve_model(str(source), settings) == wrapped
    session = ort.InferenceSession(str(wrapped), providers=["CPUExecutionProvider"])
    spec = ModelSpec.from_graph(session.get_modelmeta().custom_metadata_map, session.get_inputs()[0].shape)
    assert spec.foreign and spec.num_labels == CLASSES and spec.label(0) == "road"  # Cityscapes by count
    assert spec.fixed_batch is None and spec.fixed_size is None
    image = np.random.default_rng(1).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    # output_size = the logits' size makes the resize an identity: the mask is the argmax of the logits
    (mask,) = session.run(["mask"], {"image": image, "output_size": np.array([16, 24])})
    pixels = (image.astype(np.float32) / 255 - np.array(IMAGENET_MEAN, np.float32)) / np.array(
        IMAGENET_STD, np.float32
    )
    network = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    (logits,) = network.run(None, {"pixel_values": pixels.transpose(0, 3, 1, 2).astype(np.float32)})
    assert np.mean(mask == logits.argmax(axis=1)) >= 0.999
    (full,) = session.run(["mask"], {"image": image})  # default output_size: the input size
    assert full.shape == (2, 64, 96) and full.dtype == np.uint8


def test_more_than_256_classes_give_16_bit_masks(tmp_path: Path) -> None:
    source = tiny_foreign(tmp_path / "many.onnx", opset=17, classes=300)
    server = Served(tmp_path, "--model", str(source), "--mode", "native")
    try:
        server.wait_ready()
        model = httpx.get(f"{server.url}/v1/model", timeout=10).json()
        assert model["num_labels"] == 300 and model["mask_dtype"] == "uint16"
        answer = httpx.post(
            f"{server.url}/v1/segment",
            content=image_bytes(96, 128, "PNG", seed=2),
            headers={"Content-Type": "image/png"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        with Image.open(io.BytesIO(answer.content)) as png:
            assert png.mode == "I;16" and png.size == (128, 96)
            mask = np.asarray(png)
        assert mask.max() < 300
        assert sorted(int(c) for c in answer.headers["x-segformer-classes"].split(",")) == sorted(
            np.unique(mask).tolist()
        )
    finally:
        assert server.stop() == 0, server.log_tail()
