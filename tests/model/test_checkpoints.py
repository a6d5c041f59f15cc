"""model.checkpoints: format detection, key remapping, architecture inference, strict loading."""

from __future__ import annotations

import pytest
import torch

from model import checkpoints
from model.checkpoints import CheckpointError
from model.segformer import segformer


def _ours(variant: str = "b0") -> dict[str, torch.Tensor]:
    return segformer(variant).state_dict()


def test_detect_format() -> None:
    assert checkpoints.detect_format({"segformer.encoder.block.0.0.mlp.dense1.bias": torch.zeros(1)}) == "hf"
    assert checkpoints.detect_format({"backbone.block1.0.attn.kv.weight": torch.zeros(1)}) == "nvlabs"
    assert checkpoints.detect_format({"backbone.layers.0.0.projection.weight": torch.zeros(1)}) == "mmseg1"
    with pytest.raises(CheckpointError, match="ImageNet MiT backbone"):
        checkpoints.detect_format({"block1.0.attn.kv.weight": torch.zeros(1), "head.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"unrecognised keys \(first: a\.weight\)"):
        checkpoints.detect_format({"a.weight": torch.zeros(1)})


def test_nvlabs_rules() -> None:
    kv = torch.arange(2 * 64 * 64, dtype=torch.float32).reshape(128, 64)
    state = {
        "backbone.patch_embed2.proj.weight": torch.zeros(1),
        "backbone.block2.1.attn.kv.weight": kv,
        "backbone.block4.0.mlp.dwconv.dwconv.bias": torch.zeros(1),
        "backbone.norm3.weight": torch.zeros(1),
        "decode_head.linear_c4.proj.weight": torch.zeros(1),
        "decode_head.linear_fuse.conv.weight": torch.zeros(1),
        "decode_head.linear_fuse.bn.running_var": torch.zeros(1),
        "decode_head.linear_pred.bias": torch.zeros(1),
        "decode_head.conv_seg.weight": torch.zeros(1),
    }
    out = checkpoints.from_nvlabs(state)
    assert set(out) == {
        "stages.1.patch_embed.proj.weight",
        "stages.1.blocks.1.attn.k.weight",
        "stages.1.blocks.1.attn.v.weight",
        "stages.3.blocks.0.mlp.dwconv.bias",
        "stages.2.norm.weight",
        "head.linear_c.3.weight",
        "head.linear_fuse.weight",
        "head.bn.running_var",
        "head.classifier.bias",
    }
    assert torch.equal(out["stages.1.blocks.1.attn.k.weight"], kv[:64])
    assert torch.equal(out["stages.1.blocks.1.attn.v.weight"], kv[64:])


def test_infer_arch_and_variant() -> None:
    arch = checkpoints.infer_arch(_ours("b2"))
    assert arch["widths"] == (64, 128, 320, 512) and arch["depths"] == (3, 4, 6, 3)
    assert (arch["decoder_width"], arch["num_labels"]) == (768, 150)
    assert checkpoints.find_variant(arch["widths"], arch["depths"]) == "b2"
    assert checkpoints.find_variant((32, 64, 160, 256), (2, 2, 2, 3)) is None
    state = _ours()
    del state["head.classifier.weight"]
    with pytest.raises(CheckpointError, match="no decode head"):
        checkpoints.infer_arch(state)


def test_load_strict() -> None:
    net = segformer("b0")
    state = _ours()
    del state["head.bn.num_batches_tracked"]  # optional bookkeeping
    checkpoints.load_strict(net, state, "ok.pth")
    state.pop("stages.0.norm.bias")
    state["stages.0.norm.extra"] = torch.zeros(1)
    state["head.classifier.weight"] = torch.zeros(19, 256, 1, 1)
    with pytest.raises(CheckpointError) as err:
        checkpoints.load_strict(net, state, "bad.pth")
    assert str(err.value) == (
        "cannot load bad.pth strictly: missing keys: stages.0.norm.bias; "
        "unexpected keys: stages.0.norm.extra; "
        "shape mismatches: head.classifier.weight: checkpoint (19, 256, 1, 1) vs model (150, 256, 1, 1)"
    )


def test_load_strict_casts_half_precision() -> None:
    net = segformer("b0")
    half = {k: v.half() if v.is_floating_point() else v for k, v in _ours().items()}
    checkpoints.load_strict(net, half, "fp16")
    assert net.head.classifier.weight.dtype == torch.float32
