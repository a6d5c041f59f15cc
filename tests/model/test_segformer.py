"""SegFormer forward: parity with transformers (B0, B2; 512x512 and 333x517; batch 1 and 2), the fused
decode head, output shapes, and ONNX export with dynamic batch/height/width."""

from __future__ import annotations

import copy
import io
import math
import warnings

import numpy as np
import pytest
import torch

from model.loading import load_segformer
from model.segformer import SegFormer, segformer

TOL = 1e-4


@pytest.mark.parametrize("variant", ["b0", "b2"])
@pytest.mark.parametrize("size", [(512, 512), (333, 517)], ids=["512x512", "333x517"])
def test_parity_with_transformers(hf_folder, variant: str, size: tuple[int, int]) -> None:
    folder, ref = hf_folder(variant)
    net, info = load_segformer(folder)
    assert info.variant == variant and info.id2label[3] == "thing 3"
    fused = copy.deepcopy(net).fuse_for_inference()
    torch.manual_seed(1)
    x = torch.randn(2, 3, *size)
    shape = (2, 150, math.ceil(size[0] / 4), math.ceil(size[1] / 4))
    with torch.no_grad():
        expected = ref(pixel_values=x).logits  # per-image results do not depend on the batch
        got = net(x)
        assert got.shape == expected.shape == shape
        assert (got - expected).abs().max().item() <= TOL
        assert (net(x[:1]) - expected[:1]).abs().max().item() <= TOL
        assert (fused(x) - expected).abs().max().item() <= TOL


@pytest.mark.parametrize("size", [(29, 29), (31, 33), (64, 96), (97, 250)])
def test_any_size_and_batch(size: tuple[int, int]) -> None:
    net, _ = load_segformer("random:b0", num_labels=7)
    fused = copy.deepcopy(net).fuse_for_inference()
    x = torch.randn(3, 3, *size)
    with torch.no_grad():
        out = net(x)
        assert out.shape == (3, 7, math.ceil(size[0] / 4), math.ceil(size[1] / 4))
        assert torch.allclose(fused(x), out, atol=1e-5)
        assert torch.allclose(net(x[1:2]), out[1:2], atol=1e-5)


def test_too_small_input_is_a_clear_error() -> None:
    net = segformer("b0").eval()
    with pytest.raises(ValueError, match="at least 29x29"):
        net(torch.randn(1, 3, 28, 64))


def test_variants_table() -> None:
    sizes = {v: sum(p.numel() for p in segformer(v).parameters()) / 1e6 for v in ("b0", "b1", "b2")}
    # published parameter counts with the 150-class ADE20K head: 3.8M, 13.7M, 27.5M
    assert sizes["b0"] == pytest.approx(3.75, abs=0.1)
    assert sizes["b1"] == pytest.approx(13.7, abs=0.2)
    assert sizes["b2"] == pytest.approx(27.5, abs=0.3)
    with pytest.raises(ValueError, match="unknown SegFormer variant"):
        segformer("b9")


def test_inference_path_has_no_dropout() -> None:
    net = segformer("b0").train()
    names = {type(m).__name__ for m in net.modules()}
    assert not names & {"Dropout", "DropPath", "Identity"}
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        net.eval()
        assert torch.equal(net(x), net(x))


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")
@pytest.mark.filterwarnings("ignore:The feature will be removed")
@pytest.mark.parametrize("fused", [False, True], ids=["reference-head", "fused-head"])
def test_onnx_export_dynamic_shapes(fused: bool) -> None:
    ort = pytest.importorskip("onnxruntime")
    net: SegFormer = load_segformer("random:b0", num_labels=5)[0]
    if fused:
        net.fuse_for_inference()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)  # a shape baked in as a constant would warn
        torch.onnx.export(
            net,
            (torch.randn(1, 3, 64, 64),),
            buf,
            input_names=["pixel_values"],
            output_names=["logits"],
            dynamic_axes={"pixel_values": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h4", 3: "w4"}},
            opset_version=17,
            dynamo=False,
        )
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    for shape in [(3, 3, 133, 217), (1, 3, 256, 512)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = net(x).numpy()
        (got,) = session.run(None, {"pixel_values": x.numpy()})
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= TOL
