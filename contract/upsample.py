"""Bilinear upsampling of the logits to the output size, then argmax over classes, as ONNX nodes.

Both modes follow torch ``F.interpolate(mode="bilinear", align_corners=False)`` then ``argmax(dim=1)``.

``full``: ``Resize`` (``pytorch_half_pixel``) of every class channel to full resolution, ``ArgMax``.
Exact, but writes and reads C full-size planes (150 for ADE20K).

``topk``: an output pixel's value for class c is a convex combination of c's logits at the 4 low-res
neighbours, so the winner is (in practice) among the K best classes of one of those neighbours. Per
low-res cell the candidates are the union of its 4 corners' top-K (4K slots); their corner logits are
gathered at low resolution, interpolated separably (x, then y, with torch's indices and weights) for the
4K slots only, and the best slot's class is the label: 4K planes instead of C at full resolution.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

UPSAMPLE_MODES = ("full", "topk")
# topk K=3 agrees with full on 100 % of real-photo pixels and is 1.5-10x faster (docs/export.md)
DEFAULT_UPSAMPLE = "topk"
DEFAULT_TOPK = 3
_END = np.iinfo(np.int64).max


def resize_node(data: str, sizes: str, output: str) -> onnx.NodeProto:
    """Bilinear Resize to ``sizes`` (4 values, NCHW) with PyTorch align_corners=False semantics."""
    return helper.make_node(
        "Resize",
        [data, "", "", sizes],
        [output],
        mode="linear",
        coordinate_transformation_mode="pytorch_half_pixel",
    )


class _Nodes:
    """Appends nodes with generated output names; constants go to ``consts`` (to become initializers)."""

    def __init__(self, prefix: str, consts: dict[str, np.ndarray]) -> None:
        self.prefix, self.consts, self.nodes = prefix, consts, []

    def const(self, name: str, value: object, dtype: type = np.int64) -> str:
        self.consts[f"{self.prefix}_{name}"] = np.asarray(value, dtype=dtype)
        return f"{self.prefix}_{name}"

    def __call__(self, op: str, *inputs: str, out: str | None = None, **attrs: object) -> str:
        name = out or f"{self.prefix}_{len(self.nodes)}_{op.lower()}"
        self.nodes.append(helper.make_node(op, list(inputs), [name], **attrs))
        return name


def _axis_weights(n: _Nodes, in_size: str, out_size: str, tag: str) -> tuple[str, str, str]:
    """torch's source index i0 [out] and weights (l0, l1) [out] for one axis (align_corners=False)."""
    f32 = TensorProto.FLOAT
    pos = n("Cast", n("Range", n.const("zero", 0), out_size, n.const("one", 1)), to=f32)
    scale = n("Div", n("Cast", in_size, to=f32), n("Cast", out_size, to=f32))
    half = n.const("half", 0.5, np.float32)
    src = n("Max", n("Sub", n("Mul", scale, n("Add", pos, half)), half), n.const("zero_f", 0.0, np.float32))
    last = n("Sub", in_size, n.const("one", 1))
    i0 = n("Min", n("Cast", n("Floor", src), to=TensorProto.INT64), last, out=f"{n.prefix}_{tag}0")
    l1 = n("Clip", n("Sub", src, n("Cast", i0, to=f32)), n.const("zero_f", 0.0, np.float32),
           n.const("one_f", 1.0, np.float32))  # fmt: skip
    l0 = n("Sub", n.const("one_f", 1.0, np.float32), l1)
    return i0, l0, l1


def _next(n: _Nodes, t: str, axis: int) -> str:
    """``t`` shifted by one along ``axis`` with the last element repeated (the +1 neighbour, clamped)."""
    rest = n("Slice", t, n.const("one_1d", [1]), n.const("end_1d", [_END]), n.const(f"axis{axis}", [axis]))
    last = n(
        "Slice", t, n.const("minus1_1d", [-1]), n.const("end_1d", [_END]), n.const(f"axis{axis}", [axis])
    )
    return n("Concat", rest, last, axis=axis)


def _topk(n: _Nodes, logits: str, out_hw: str, labels: str, k: int) -> None:
    shape = n("Shape", logits)
    in_h, in_w = (n("Gather", shape, n.const(f"dim{d}", d)) for d in (2, 3))
    out_h, out_w = (n("Gather", out_hw, n.const(f"dim{d}", d)) for d in (0, 1))
    y0, wy0, wy1 = _axis_weights(n, in_h, out_h, "y")
    x0, wx0, wx1 = _axis_weights(n, in_w, out_w, "x")
    col = n.const("col_shape", [1, 1, 1, -1])
    wx0, wx1 = n("Reshape", wx0, col), n("Reshape", wx1, col)
    row = n.const("row_shape", [1, 1, -1, 1])
    wy0, wy1 = n("Reshape", wy0, row), n("Reshape", wy1, row)

    idx = f"{n.prefix}_topk_indices"
    n.nodes.append(
        helper.make_node("TopK", [logits, n.const("k", [k])], [f"{n.prefix}_topk_values", idx], axis=1)
    )
    below, right = _next(n, logits, 2), _next(n, logits, 3)
    corners = [logits, right, below, _next(n, below, 3)]  # (y0,x0) (y0,x1) (y1,x0) (y1,x1)
    idx_below = _next(n, idx, 2)
    cand = n("Concat", idx, _next(n, idx, 3), idx_below, _next(n, idx_below, 3), axis=1)  # [N,4K,h,w]
    # per cell: the candidates' logits at the 4 corners, then columns gathered at full width
    c00, c01, c10, c11 = (n("Gather", n("GatherElements", c, cand, axis=1), x0, axis=3) for c in corners)
    top = n("Add", n("Mul", c00, wx0), n("Mul", c01, wx1))  # [N,4K,h,W]
    bottom = n("Add", n("Mul", c10, wx0), n("Mul", c11, wx1))
    value = n(
        "Add", n("Mul", n("Gather", top, y0, axis=2), wy0), n("Mul", n("Gather", bottom, y0, axis=2), wy1)
    )
    slot = n("ArgMax", value, axis=1, keepdims=1)  # [N,1,H,W]
    cand_full = n("Gather", n("Gather", n("Cast", cand, to=TensorProto.INT32), x0, axis=3), y0, axis=2)
    n("Squeeze", n("GatherElements", cand_full, slot, axis=1), n.const("axis1", [1]), out=labels)


def upsample_argmax(
    logits: str,
    out_hw: str,
    labels: str,
    *,
    mode: str,
    consts: dict[str, np.ndarray],
    num_labels: int = 0,
    topk: int = DEFAULT_TOPK,
) -> list[onnx.NodeProto]:
    """Nodes computing integer ``labels`` [N, H, W] from float32 ``logits`` [N, C, h, w] and int64 ``out_hw``.

    Constants the nodes need are added to ``consts`` (name -> array), to become initializers. The
    server's per-image head (``server.head``) computes the same with the same float32 arithmetic.
    """
    if mode == "full":
        return [
            helper.make_node("Shape", [logits], ["logits_nc"], start=0, end=2),
            helper.make_node("Concat", ["logits_nc", out_hw], ["upsample_sizes"], axis=0),
            resize_node(logits, "upsample_sizes", "logits_upsampled"),
            helper.make_node("ArgMax", ["logits_upsampled"], [labels], axis=1, keepdims=0),
        ]
    if mode == "topk":
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        nodes = _Nodes("upsample", consts)
        _topk(nodes, logits, out_hw, labels, min(topk, num_labels) if num_labels else topk)
        return nodes.nodes
    raise ValueError(f"unknown upsample mode {mode!r}; expected one of {UPSAMPLE_MODES}")
