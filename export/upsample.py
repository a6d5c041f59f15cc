"""Bilinear upsampling of the logits to the output size, then argmax over classes, as ONNX nodes.

``full``: Resize every class channel to full resolution (torch ``interpolate(mode="bilinear",
align_corners=False)`` semantics, i.e. ONNX ``pytorch_half_pixel``), ArgMax over classes.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

UPSAMPLE_MODES = ("full",)


def resize_node(data: str, sizes: str, output: str) -> onnx.NodeProto:
    """Bilinear Resize to ``sizes`` (4 values, NCHW) with PyTorch align_corners=False semantics."""
    return helper.make_node(
        "Resize",
        [data, "", "", sizes],
        [output],
        mode="linear",
        coordinate_transformation_mode="pytorch_half_pixel",
    )


def upsample_argmax(
    logits: str, out_hw: str, labels: str, *, mode: str, consts: dict[str, np.ndarray]
) -> list[onnx.NodeProto]:
    """Nodes computing int64 ``labels`` [N, H, W] from float32 ``logits`` [N, C, h, w] and int64 ``out_hw``.

    Constants the nodes need are added to ``consts`` (name -> array), to become initializers.
    """
    if mode == "full":
        return [
            helper.make_node("Shape", [logits], ["logits_nc"], start=0, end=2),
            helper.make_node("Concat", ["logits_nc", out_hw], ["upsample_sizes"], axis=0),
            resize_node(logits, "upsample_sizes", "logits_upsampled"),
            helper.make_node("ArgMax", ["logits_upsampled"], [labels], axis=1, keepdims=0),
        ]
    raise ValueError(f"unknown upsample mode {mode!r}; expected one of {UPSAMPLE_MODES}")
