"""State-dict key remapping (Hugging Face, NVlabs/mmseg 0.x -> this package), in the style of timm's
``checkpoint_filter_fn``: a few regexes, plus splitting NVlabs' fused ``kv`` projection."""

from __future__ import annotations

import re

import torch
from torch import nn

from model.segformer import VARIANTS

StateDict = dict[str, torch.Tensor]


class CheckpointError(ValueError):
    """A checkpoint cannot be loaded; the message says why (and names the offending keys)."""


_HF_RULES: list[tuple[str, str]] = [
    (r"^segformer\.encoder\.patch_embeddings\.(\d)\.layer_norm\.", r"stages.\1.patch_embed.norm."),
    (r"^segformer\.encoder\.patch_embeddings\.(\d)\.proj\.", r"stages.\1.patch_embed.proj."),
    (r"^segformer\.encoder\.layer_norm\.(\d)\.", r"stages.\1.norm."),
    (r"^segformer\.encoder\.block\.(\d)\.(\d+)\.", r"stages.\1.blocks.\2."),
    (r"\.layer_norm_1\.", ".norm1."),
    (r"\.layer_norm_2\.", ".norm2."),
    (r"\.attention\.self\.query\.", ".attn.q."),
    (r"\.attention\.self\.key\.", ".attn.k."),
    (r"\.attention\.self\.value\.", ".attn.v."),
    (r"\.attention\.self\.sr\.", ".attn.sr."),
    (r"\.attention\.self\.layer_norm\.", ".attn.norm."),
    (r"\.attention\.output\.dense\.", ".attn.proj."),
    (r"\.mlp\.dense1\.", ".mlp.fc1."),
    (r"\.mlp\.dense2\.", ".mlp.fc2."),
    (r"\.mlp\.dwconv\.dwconv\.", ".mlp.dwconv."),
    (r"^decode_head\.linear_c\.(\d)\.proj\.", r"head.linear_c.\1."),
    (r"^decode_head\.linear_fuse\.", "head.linear_fuse."),
    (r"^decode_head\.batch_norm\.", "head.bn."),
    (r"^decode_head\.classifier\.", "head.classifier."),
]

_NV_RULES: list[tuple[str, str]] = [
    (r"^backbone\.patch_embed(\d)\.", r"stages.{\1}.patch_embed."),
    (r"^backbone\.block(\d)\.(\d+)\.", r"stages.{\1}.blocks.\2."),
    (r"^backbone\.norm(\d)\.", r"stages.{\1}.norm."),
    (r"\.mlp\.dwconv\.dwconv\.", ".mlp.dwconv."),
    (r"^decode_head\.linear_c(\d)\.proj\.", r"head.linear_c.{\1}."),
    (r"^decode_head\.linear_fuse\.conv\.", "head.linear_fuse."),
    (r"^decode_head\.linear_fuse\.bn\.", "head.bn."),
    (r"^decode_head\.linear_pred\.", "head.classifier."),
]
_MMSEG1_RULES: list[tuple[str, str]] = [
    (r"^backbone\.layers\.(\d)\.0\.projection\.", r"stages.\1.patch_embed.proj."),
    (r"^backbone\.layers\.(\d)\.0\.norm\.", r"stages.\1.patch_embed.norm."),
    (r"^backbone\.layers\.(\d)\.1\.(\d+)\.", r"stages.\1.blocks.\2."),
    (r"^backbone\.layers\.(\d)\.2\.", r"stages.\1.norm."),
    (r"\.attn\.attn\.out_proj\.", ".attn.proj."),
    (r"\.ffn\.layers\.0\.", ".mlp.fc1."),
    (r"\.ffn\.layers\.1\.", ".mlp.dwconv."),
    (r"\.ffn\.layers\.4\.", ".mlp.fc2."),
    (r"^decode_head\.(convs\.\d|fusion_conv)\.", r"head.\1."),
    (r"^decode_head\.conv_seg\.", "head.classifier."),
]
_ONE_BASED = re.compile(r"\{(\d)\}")


def _apply(key: str, rules: list[tuple[str, str]]) -> str:
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


def detect_format(state: StateDict) -> str:
    """``"hf"``, ``"nvlabs"`` (mmseg 0.x) or ``"mmseg1"`` from the key names; ValueError otherwise."""
    keys = state.keys()
    if any(k.startswith("segformer.encoder.") for k in keys):
        return "hf"
    if any(k.startswith("backbone.block1.") for k in keys):
        return "nvlabs"
    if any(k.startswith("backbone.layers.") for k in keys):
        return "mmseg1"
    if any(k.startswith("block1.") for k in keys):
        raise CheckpointError("an ImageNet MiT backbone (block1.*, no decode head), not a segmentation model")
    sample = ", ".join(sorted(keys)[:5])
    raise CheckpointError(f"not a SegFormer checkpoint: unrecognised keys (first: {sample})")


def from_hf(state: StateDict) -> StateDict:
    """Rename a transformers ``SegformerForSemanticSegmentation`` state dict."""
    return {_apply(k, _HF_RULES): v for k, v in state.items()}


def from_nvlabs(state: StateDict) -> StateDict:
    """Rename an NVlabs/mmseg 0.x state dict: 1-based stage names, fused ``kv`` split, ``conv_seg`` dropped.

    mmseg's ``decode_head.conv_seg`` is an unused, untrained classifier; the trained one is ``linear_pred``.
    """
    out: StateDict = {}
    for key, value in state.items():
        if key.startswith("decode_head.conv_seg."):
            continue
        new = _apply(key, _NV_RULES)
        new = _ONE_BASED.sub(lambda m: str(int(m.group(1)) - 1), new)
        if ".attn.kv." in new:
            k, v = value.chunk(2, dim=0)
            out[new.replace(".attn.kv.", ".attn.k.")] = k
            out[new.replace(".attn.kv.", ".attn.v.")] = v
        else:
            out[new] = value
    return out


def find_variant(widths: tuple[int, ...], depths: tuple[int, ...]) -> str | None:
    """The B0-B5 name whose widths and depths these are, or None."""
    for name, cfg in VARIANTS.items():
        if tuple(widths) == cfg.widths and tuple(depths) == cfg.depths:
            return name
    return None


def from_mmseg1(state: StateDict) -> StateDict:
    """Rename an mmseg 1.x state dict: ``nn.MultiheadAttention``'s packed ``in_proj`` is split into q/k/v,
    the Mix-FFN's 1x1 convs become linears; ``conv_seg`` is this head's trained classifier."""
    out: StateDict = {}
    for key, value in state.items():
        new = _apply(key, _MMSEG1_RULES)
        if ".attn.attn.in_proj_" in new:
            kind = "weight" if new.endswith("in_proj_weight") else "bias"
            stem = new.split(".attn.attn.in_proj_")[0]
            for name, part in zip("qkv", value.chunk(3, dim=0), strict=True):
                out[f"{stem}.attn.{name}.{kind}"] = part
            continue
        if (".mlp.fc1." in new or ".mlp.fc2." in new) and value.ndim == 4:
            value = value.flatten(1)
        out[new] = value
    return out


def infer_arch(state: StateDict) -> dict[str, object]:
    """Widths, depths, decoder width and class count read from a (remapped) state dict."""
    widths, depths = [], []
    for i in range(4):
        proj = state.get(f"stages.{i}.patch_embed.proj.weight")
        if proj is None:
            raise CheckpointError(
                f"checkpoint has no stage {i} patch embedding (stages.{i}.patch_embed.proj.weight)"
            )
        widths.append(int(proj.shape[0]))
        blocks = {int(m.group(1)) for k in state if (m := re.match(rf"stages\.{i}\.blocks\.(\d+)\.", k))}
        depths.append(max(blocks) + 1 if blocks else 0)
    classifier = state.get("head.classifier.weight")
    if classifier is None:
        raise CheckpointError("checkpoint has no decode head (no classifier weight)")
    return {
        "widths": tuple(widths),
        "depths": tuple(depths),
        "decoder_width": int(classifier.shape[1]),
        "num_labels": int(classifier.shape[0]),
    }


def load_strict(model: nn.Module, state: StateDict, source: str) -> None:
    """Load ``state`` into ``model``; any missing, unexpected or mis-shaped key is an error naming it.

    BatchNorm's ``num_batches_tracked`` counters are optional (training bookkeeping only).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    for title, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", shapes),
    ):
        if items:
            shown = ", ".join(items[:20]) + (f", ... ({len(items)} in all)" if len(items) > 20 else "")
            problems.append(f"{title}: {shown}")
    if problems:
        raise CheckpointError(f"cannot load {source} strictly: " + "; ".join(problems))
    merged = {k: state.get(k, v) for k, v in expected.items()}
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in merged.items()}, strict=True)
