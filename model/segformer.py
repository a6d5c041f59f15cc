"""SegFormer (Mix Transformer encoder + all-MLP decoder) in plain PyTorch, inference only.

Layout follows timm's ``pvt_v2``: typed constructors, stages in an ``nn.ModuleList``, variants B0-B5 in
a small table. The semantics are those of transformers' ``SegformerForSemanticSegmentation(...).logits``
(LayerNorm eps 1e-5 by default, exact GELU, concat order c4,c3,c2,c1). Every size is read from tensor
shapes, so the module traces for ONNX with dynamic batch, height and width.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from model.heads import DecodeHead, FusedDecodeHead, MMSegHead

# Smallest input side: stage 1 (stride 4) must be at least as large as its 8x8 key/value reduction conv.
MIN_SIZE = 29


@dataclasses.dataclass(frozen=True)
class SegFormerConfig:
    widths: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    decoder_width: int
    heads: tuple[int, int, int, int] = (1, 2, 5, 8)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    mlp_ratio: int = 4
    num_labels: int = 150
    norm_eps: float = 1e-5  # block and stage norms: 1e-5 in transformers, 1e-6 in NVlabs and mmseg
    embed_eps: float = 1e-5  # patch-embedding and key/value-reduction norms: 1e-6 in mmseg 1.x only
    head: str = "mlp"  # "mlp" (all-MLP, as NVlabs and transformers) or "mmseg1" (conv+BN+ReLU per stage)


VARIANTS: dict[str, SegFormerConfig] = {
    "b0": SegFormerConfig((32, 64, 160, 256), (2, 2, 2, 2), 256),
    "b1": SegFormerConfig((64, 128, 320, 512), (2, 2, 2, 2), 256),
    "b2": SegFormerConfig((64, 128, 320, 512), (3, 4, 6, 3), 768),
    "b3": SegFormerConfig((64, 128, 320, 512), (3, 4, 18, 3), 768),
    "b4": SegFormerConfig((64, 128, 320, 512), (3, 8, 27, 3), 768),
    "b5": SegFormerConfig((64, 128, 320, 512), (3, 6, 40, 3), 768),
}


class OverlapPatchEmbed(nn.Module):
    def __init__(self, in_chans: int, dim: int, patch_size: int, stride: int, eps: float) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[2], x.shape[3]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class EfficientAttention(nn.Module):
    """Multi-head self-attention whose keys/values are spatially reduced by a strided conv."""

    def __init__(self, dim: int, heads: int, sr_ratio: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio)
            self.norm = nn.LayerNorm(dim, eps=eps)

    def _split(self, t: torch.Tensor, n: int) -> torch.Tensor:
        return t.reshape(n, -1, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        n, _, c = x.shape
        q = self._split(self.q(x), n)
        kv = x
        if self.sr_ratio > 1:
            kv = self.sr(x.transpose(1, 2).reshape(n, c, h, w))
            kv = self.norm(kv.reshape(n, c, -1).transpose(1, 2))
        k, v = self._split(self.k(kv), n), self._split(self.v(kv), n)
        attn = torch.softmax(torch.matmul(q, k.transpose(2, 3)) * self.scale, dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(n, -1, c)
        return self.proj(out)


class MixFFN(nn.Module):
    """fc1 -> 3x3 depth-wise conv -> GELU -> fc2 (the conv stands in for positional encoding)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = self.fc1(x)
        n, _, c = x.shape
        x = self.dwconv(x.transpose(1, 2).reshape(n, c, h, w)).flatten(2).transpose(1, 2)
        return self.fc2(F.gelu(x))


class Block(nn.Module):
    def __init__(self, cfg: SegFormerConfig, index: int) -> None:
        super().__init__()
        dim = cfg.widths[index]
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = EfficientAttention(dim, cfg.heads[index], cfg.sr_ratios[index], cfg.embed_eps)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = MixFFN(dim, dim * cfg.mlp_ratio)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.mlp(self.norm2(x), h, w)


class MixStage(nn.Module):
    def __init__(self, cfg: SegFormerConfig, index: int) -> None:
        super().__init__()
        in_chans = 3 if index == 0 else cfg.widths[index - 1]
        dim = cfg.widths[index]
        patch, stride = (7, 4) if index == 0 else (3, 2)
        self.patch_embed = OverlapPatchEmbed(in_chans, dim, patch, stride, cfg.embed_eps)
        self.blocks = nn.ModuleList(Block(cfg, index) for _ in range(cfg.depths[index]))
        self.norm = nn.LayerNorm(dim, eps=cfg.norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, h, w = self.patch_embed(x)
        for block in self.blocks:
            x = block(x, h, w)
        x = self.norm(x)
        return x.transpose(1, 2).reshape(x.shape[0], -1, h, w)


class SegFormer(nn.Module):
    """``forward(pixel_values [N,3,H,W] normalised) -> logits [N, num_labels, ceil(H/4), ceil(W/4)]``."""

    def __init__(self, cfg: SegFormerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_labels = cfg.num_labels
        self.stages = nn.ModuleList(MixStage(cfg, i) for i in range(len(cfg.depths)))
        head = {"mlp": DecodeHead, "mmseg1": MMSegHead}[cfg.head]
        self.head: nn.Module = head(cfg.widths, cfg.decoder_width, cfg.num_labels)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing() and min(pixel_values.shape[-2:]) < MIN_SIZE:
            raise ValueError(
                f"SegFormer needs inputs of at least {MIN_SIZE}x{MIN_SIZE}, got {pixel_values.shape}"
            )
        feats = []
        x = pixel_values
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return self.head(feats)

    @torch.no_grad()
    def fuse_for_inference(self) -> SegFormer:
        """Replace the all-MLP decode head with its folded form (same logits, faster); returns ``self``.

        The mmseg 1.x head has a ReLU per stage, so it stays as it is."""
        if isinstance(self.head, DecodeHead):
            self.head = FusedDecodeHead(self.head)
        return self.eval()

    def init_weights(self, seed: int = 0) -> SegFormer:
        """Deterministic random init (truncated-normal linears, fan-out convs), as the NVlabs code does."""
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen).clamp_(-2, 2) * 0.02)
                    m.bias.zero_()
                elif isinstance(m, nn.Conv2d):
                    fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_out) ** 0.5)
                    if m.bias is not None:
                        m.bias.zero_()
        return self


def segformer(variant: str, num_labels: int = 150) -> SegFormer:
    """Build an (untrained) SegFormer ``b0``..``b5`` with ``num_labels`` classes."""
    try:
        base = VARIANTS[variant.lower()]
    except KeyError:
        raise ValueError(
            f"unknown SegFormer variant {variant!r}; expected one of {sorted(VARIANTS)}"
        ) from None
    return SegFormer(dataclasses.replace(base, num_labels=num_labels))
