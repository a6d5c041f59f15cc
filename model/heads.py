"""SegFormer decode heads: the all-MLP head (NVlabs, transformers), its folded inference form, and
mmseg 1.x's variant with conv+BN+ReLU per stage."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DecodeHead(nn.Module):
    """All-MLP decoder: per-stage linear to ``width``, upsample to 1/4, concat c4..c1, 1x1 fuse+BN+ReLU."""

    def __init__(self, in_widths: tuple[int, ...], width: int, num_labels: int) -> None:
        super().__init__()
        self.linear_c = nn.ModuleList(nn.Linear(c, width) for c in in_widths)
        self.linear_fuse = nn.Conv2d(width * len(in_widths), width, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.classifier = nn.Conv2d(width, num_labels, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[2:]
        outs = []
        for feat, linear in zip(feats, self.linear_c, strict=True):
            n, _, h, w = feat.shape
            x = linear(feat.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(n, -1, h, w)
            if len(outs) > 0:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            outs.append(x)
        x = torch.relu(self.bn(self.linear_fuse(torch.cat(outs[::-1], dim=1))))
        return self.classifier(x)


class FusedDecodeHead(nn.Module):
    """The same head with linear_fuse and BN folded into each stage's projection, applied before upsampling.

    Bilinear upsampling is linear and preserves constants, so projecting at low resolution and summing
    equals concat + 1x1 fuse + BN up to float rounding, at a fraction of the cost at 1/4 resolution.
    """

    def __init__(self, head: DecodeHead) -> None:
        super().__init__()
        width = head.bn.num_features
        count = len(head.linear_c)
        bn = head.bn
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        shift = bn.bias.double() - bn.running_mean.double() * scale
        fuse = head.linear_fuse.weight.double().flatten(1)  # [D, count*D], input order c4..c1
        self.proj = nn.ModuleList()
        for i, linear in enumerate(head.linear_c):
            part = fuse[:, (count - 1 - i) * width : (count - i) * width] * scale[:, None]
            conv = nn.Conv2d(linear.in_features, width, 1)
            weight = part @ linear.weight.double()
            bias = part @ linear.bias.double() + (shift if i == 0 else 0.0)
            conv.weight.data.copy_(weight[:, :, None, None].float())
            conv.bias.data.copy_(bias.float())
            self.proj.append(conv)
        self.classifier = head.classifier

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[2:]
        x = self.proj[0](feats[0])
        for feat, proj in zip(feats[1:], self.proj[1:], strict=True):
            x = x + F.interpolate(proj(feat), size=size, mode="bilinear", align_corners=False)
        return self.classifier(torch.relu(x))


class ConvBNReLU(nn.Module):
    """mmcv's ``ConvModule`` with a 1x1 conv (no bias), BatchNorm and ReLU."""

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, out_chans, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class MMSegHead(nn.Module):
    """mmseg 1.x ``SegformerHead``: conv+BN+ReLU per stage, upsample, concat c1..c4, conv+BN+ReLU."""

    def __init__(self, in_widths: tuple[int, ...], width: int, num_labels: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(ConvBNReLU(c, width) for c in in_widths)
        self.fusion_conv = ConvBNReLU(width * len(in_widths), width)
        self.classifier = nn.Conv2d(width, num_labels, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[2:]
        outs = [self.convs[0](feats[0])]
        for feat, conv in zip(feats[1:], self.convs[1:], strict=True):
            outs.append(F.interpolate(conv(feat), size=size, mode="bilinear", align_corners=False))
        return self.classifier(self.fusion_conv(torch.cat(outs, dim=1)))
