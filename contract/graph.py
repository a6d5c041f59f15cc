"""The serving wrapper around a network graph, in plain ONNX (no torch, so the server may reuse it).

network: ``pixel_values`` float [N, 3, H, W] (ImageNet-normalised) -> ``logits`` float [N, C, h, w]
wrapped: ``image`` uint8 [N, H, W, 3] RGB, ``output_size`` int64 [2] (optional, default [0, 0] = input
size, per element) -> ``mask`` (argmax of the bilinearly upsampled logits) and optionally ``logits``.
See docs/CONTRACT.md §3.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from contract.upsample import DEFAULT_TOPK, DEFAULT_UPSAMPLE, UPSAMPLE_MODES, upsample_argmax

IMAGE = "image"
OUTPUT_SIZE = "output_size"
MASK = "mask"
LOGITS = "logits"
MIN_OPSET = 15  # Shape(start, end) and optional Resize inputs


def mask_dtype_for(num_labels: int) -> str:
    """``uint8`` up to 256 classes, ``uint16`` up to 65536."""
    if num_labels <= 256:
        return "uint8"
    if num_labels <= 65536:
        return "uint16"
    raise ValueError(f"{num_labels} classes do not fit a uint16 mask")


def _elem_type(value: onnx.ValueInfoProto) -> int:
    return value.type.tensor_type.elem_type


def _replace_name(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def wrap_network(
    network: onnx.ModelProto,
    *,
    image_mean: Sequence[float],
    image_std: Sequence[float],
    outputs: Sequence[str] = (MASK,),
    mask_dtype: str = "uint8",
    upsample: str = DEFAULT_UPSAMPLE,
    topk: int = DEFAULT_TOPK,
) -> onnx.ModelProto:
    """Return a new model: uint8 NHWC ``image`` (+ ``output_size``) in, ``mask`` (+ ``logits``) out.

    The network must have exactly one float input (NCHW) and one float output (logits, NCHW);
    fp16 networks are fed and read through Casts, so normalisation and upsampling stay in fp32.
    """
    if upsample not in UPSAMPLE_MODES:
        raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
    if MASK not in outputs or not set(outputs) <= {MASK, LOGITS}:
        raise ValueError(f"outputs must be ['mask'] or ['mask', 'logits'], got {list(outputs)}")
    model = onnx.ModelProto()
    model.CopyFrom(network)
    graph = model.graph
    (net_in,) = graph.input
    (net_out,) = graph.output
    in_type, out_type = _elem_type(net_in), _elem_type(net_out)
    # internal tensor names: the network's output becomes "logits" whatever the exporter called it
    if net_out.name != LOGITS:
        _replace_name(graph, net_out.name, LOGITS)
    n_classes = net_out.type.tensor_type.shape.dim[1].dim_value

    mean = np.asarray(image_mean, dtype=np.float64).reshape(1, 3, 1, 1)
    std = np.asarray(image_std, dtype=np.float64).reshape(1, 3, 1, 1)
    consts = {
        "norm_scale": (1.0 / (255.0 * std)).astype(np.float32),
        "norm_bias": (-mean / std).astype(np.float32),
        "zero_i64": np.array(0, dtype=np.int64),
    }
    pre = [
        helper.make_node("Transpose", [IMAGE], ["image_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Cast", ["image_nchw"], ["image_f32"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["image_f32", "norm_scale"], ["image_scaled"]),
    ]
    if in_type == TensorProto.FLOAT:
        pre.append(helper.make_node("Add", ["image_scaled", "norm_bias"], [net_in.name]))
    else:
        pre.append(helper.make_node("Add", ["image_scaled", "norm_bias"], ["pixel_values_f32"]))
        pre.append(helper.make_node("Cast", ["pixel_values_f32"], [net_in.name], to=in_type))

    logits_f32 = LOGITS
    post: list[onnx.NodeProto] = []
    if out_type != TensorProto.FLOAT:
        logits_f32 = "logits_f32"
        post.append(helper.make_node("Cast", [LOGITS], [logits_f32], to=TensorProto.FLOAT))
    post += [
        helper.make_node("Shape", [IMAGE], ["input_hw"], start=1, end=3),
        helper.make_node("Equal", [OUTPUT_SIZE, "zero_i64"], ["output_size_is_default"]),
        helper.make_node("Where", ["output_size_is_default", "input_hw", OUTPUT_SIZE], ["out_hw"]),
    ]
    label_type = TensorProto.UINT8 if mask_dtype == "uint8" else TensorProto.UINT16
    post += upsample_argmax(
        logits_f32, "out_hw", "labels", mode=upsample, consts=consts, num_labels=n_classes, topk=topk
    )
    post.append(helper.make_node("Cast", ["labels"], [MASK], to=label_type))

    nodes = [*pre, *graph.node, *post]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    graph.initializer.append(numpy_helper.from_array(np.zeros(2, dtype=np.int64), OUTPUT_SIZE))
    del graph.input[:]
    graph.input.extend(
        [
            helper.make_tensor_value_info(IMAGE, TensorProto.UINT8, ["batch", "height", "width", 3]),
            # also an initializer (default [0, 0]): listed as an input so callers may override it
            helper.make_tensor_value_info(OUTPUT_SIZE, TensorProto.INT64, [2]),
        ]
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(MASK, label_type, ["batch", "out_height", "out_width"]))
    if LOGITS in outputs:
        graph.output.append(
            helper.make_tensor_value_info(
                LOGITS, out_type, ["batch", n_classes or "classes", "logits_height", "logits_width"]
            )
        )
    del graph.value_info[:]
    model.ir_version = max(model.ir_version, 8)
    return model
