"""mmseg 1.x checkpoints (backbone.layers.*, decode_head.convs.*, fusion_conv, conv_seg): loaded and checked
against an independent functional re-implementation of mmseg 1.x's MixVisionTransformer + SegformerHead
built on ``torch.nn.MultiheadAttention`` and 1x1 convolutions, as mmseg computes it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model.loading import load_segformer
from model.segformer import VARIANTS, SegFormer, SegFormerConfig

EPS = 1e-6  # mmseg 1.x: norm_cfg=dict(type="LN", eps=1e-6) for every LayerNorm


def _mmseg1_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in mmseg 1.x names (made from this package's module tree, renamed)."""
    cfg = SegFormerConfig(**{**VARIANTS["b0"].__dict__, "num_labels": 11, "head": "mmseg1"})
    net = SegFormer(cfg)
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, value in net.state_dict().items():
        if value.is_floating_point():  # O(1) activations and attention maps that are far from uniform
            scale = 1.5 * value[0].numel() ** -0.5 if key.endswith("weight") and value.ndim > 1 else 0.1
            value = scale * torch.randn(value.shape, generator=gen)
            if (".norm" in key and key.endswith("weight")) or ".bn.weight" in key or "running_var" in key:
                value = value.abs() + 0.5
        key = key.replace("stages.", "backbone.layers.").replace(".patch_embed.proj.", ".0.projection.")
        key = key.replace(".patch_embed.norm.", ".0.norm.").replace(".blocks.", ".1.")
        for i in range(4):
            key = key.replace(f"layers.{i}.norm.", f"layers.{i}.2.")
        key = key.replace(".attn.proj.", ".attn.attn.out_proj.").replace(".mlp.dwconv.", ".ffn.layers.1.")
        key = key.replace(".mlp.fc1.", ".ffn.layers.0.").replace(".mlp.fc2.", ".ffn.layers.4.")
        key = key.replace("head.classifier.", "head.conv_seg.").replace("head.", "decode_head.", 1)
        if ".ffn.layers.0.weight" in key or ".ffn.layers.4.weight" in key:
            value = value[:, :, None, None]
        out[key] = value
    for key in [k for k in out if ".attn.q." in k]:
        kind = key.rsplit(".", 1)[1]
        parts = [out.pop(key.replace(".attn.q.", f".attn.{n}.")) for n in "qkv"]
        out[key.replace(f".attn.q.{kind}", f".attn.attn.in_proj_{kind}")] = torch.cat(parts)
    return out


def _reference(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    def ln(t: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(t, t.shape[-1:], sd[name + ".weight"], sd[name + ".bias"], EPS)

    def conv(t: torch.Tensor, name: str, **kwargs: int) -> torch.Tensor:
        return F.conv2d(t, sd[name + ".weight"], sd.get(name + ".bias"), **kwargs)

    def conv_module(t: torch.Tensor, name: str) -> torch.Tensor:  # mmcv ConvModule: conv, BN, ReLU
        bn = [sd[f"{name}.bn.{k}"] for k in ("running_mean", "running_var", "weight", "bias")]
        return F.relu(F.batch_norm(conv(t, f"{name}.conv"), *bn, False, 0.0, 1e-5))

    feats = []
    for i, (heads, sr) in enumerate(zip((1, 2, 5, 8), (8, 4, 2, 1), strict=True)):
        p = f"backbone.layers.{i}."
        x = conv(x, p + "0.projection", stride=4 if i == 0 else 2, padding=3 if i == 0 else 1)
        n, c, h, w = x.shape
        t = ln(x.flatten(2).transpose(1, 2), p + "0.norm")
        for j in range(2):
            b = f"{p}1.{j}."
            y = ln(t, b + "norm1")
            kv = y
            if sr > 1:
                kv = conv(y.transpose(1, 2).reshape(n, c, h, w), b + "attn.sr", stride=sr)
                kv = ln(kv.flatten(2).transpose(1, 2), b + "attn.norm")
            mha = nn.MultiheadAttention(c, heads, batch_first=True).eval()
            prefix = b + "attn.attn."
            mha.load_state_dict({k.removeprefix(prefix): v for k, v in sd.items() if k.startswith(prefix)})
            t = t + mha(y, kv, kv, need_weights=False)[0]
            z = conv(ln(t, b + "norm2").transpose(1, 2).reshape(n, c, h, w), b + "ffn.layers.0")
            z = conv(z, b + "ffn.layers.1", padding=1, groups=z.shape[1])
            z = conv(F.gelu(z), b + "ffn.layers.4")
            t = t + z.flatten(2).transpose(1, 2)
        x = ln(t, p + "2").transpose(1, 2).reshape(n, c, h, w)
        feats.append(x)
    size = feats[0].shape[2:]
    outs = [conv_module(f, f"decode_head.convs.{i}") for i, f in enumerate(feats)]
    outs = [F.interpolate(o, size=size, mode="bilinear", align_corners=False) for o in outs]
    return conv(conv_module(torch.cat(outs, dim=1), "decode_head.fusion_conv"), "decode_head.conv_seg")


def test_mmseg1_checkpoint_matches_mmseg_semantics(tmp_path: Path) -> None:
    state = _mmseg1_state()
    assert "backbone.layers.1.1.0.attn.attn.in_proj_weight" in state
    assert "decode_head.fusion_conv.conv.weight" in state and "decode_head.convs.3.bn.running_var" in state
    classes = tuple(f"c{i}" for i in range(11))
    meta = {"dataset_meta": {"classes": classes, "palette": [[i, 0, 0] for i in range(11)]}}
    torch.save({"meta": meta, "state_dict": state}, tmp_path / "segformer_mit-b0_mmseg1.pth")
    net, info = load_segformer(tmp_path / "segformer_mit-b0_mmseg1.pth")
    assert (info.variant, info.num_labels, info.id2label[3], info.palette[3]) == ("b0", 11, "c3", (3, 0, 0))
    torch.manual_seed(0)
    x = torch.randn(2, 3, 229, 301)
    with torch.no_grad():
        expected = _reference(state, x)
        got = net(x)
        assert got.shape == expected.shape == (2, 11, 58, 76)
        assert (got - expected).abs().max().item() <= 1e-4
        assert torch.equal(copy.deepcopy(net).fuse_for_inference()(x), got)  # no folding for this head


def test_mmseg1_strict(tmp_path: Path) -> None:
    state = _mmseg1_state()
    del state["decode_head.fusion_conv.bn.weight"]
    torch.save({"state_dict": state}, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"missing keys: head\.fusion_conv\.bn\.weight"):
        load_segformer(tmp_path / "broken.pth")
