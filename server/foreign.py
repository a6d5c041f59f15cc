"""Wrap a foreign SegFormer ONNX (float ``pixel_values`` NCHW in, logits out) into the contract graph.

Uses the ``onnx`` package only (no torch). The wrapper adds, around the untouched foreign graph:
uint8 NHWC ``image`` → float, /255, ImageNet mean/std, NCHW; and logits → bilinear resize to
``output_size`` (default: the input size; PyTorch ``align_corners=False`` semantics) → argmax → ``mask``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_P = "segformer_wrap/"


def is_contract(model: onnx.ModelProto) -> bool:
    return any(p.key == "segformer.format" for p in model.metadata_props)


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
        for d in value.type.tensor_type.shape.dim
    ]


def _num_classes(model: onnx.ModelProto, output: onnx.ValueInfoProto) -> int:
    dims = _dims(output)
    if len(dims) == 4 and isinstance(dims[1], int) and dims[1] > 0:
        return dims[1]
    inferred = onnx.shape_inference.infer_shapes(model)
    for value in inferred.graph.output:
        if value.name == output.name and isinstance(_dims(value)[1], int) and _dims(value)[1] > 0:
            return int(_dims(value)[1])
    raise ValueError(f"cannot tell the number of classes of output {output.name!r} (shape {dims})")


def _labels(num_labels: int) -> tuple[dict[int, str], list[tuple[int, int, int]], str]:
    """Built-in ADE20K / Cityscapes labels by class count, else ``class_{i}`` (torch-free)."""
    from model import labels as builtin

    found = builtin.builtin_for(num_labels)
    if found is not None:
        id2label, palette = found
        return id2label, [tuple(c) for c in palette], "builtin"  # type: ignore[misc]
    palette = builtin.generated_palette(num_labels)
    return {i: f"class_{i}" for i in range(num_labels)}, list(palette), "generated"


def wrap_foreign(model: onnx.ModelProto, name: str, source: str, source_sha256: str) -> onnx.ModelProto:
    """Return a contract graph around ``model`` (modified in place)."""
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(_dims(inputs[0])) != 4:
        raise ValueError(f"expected one NCHW float input, found {[(i.name, _dims(i)) for i in inputs]}")
    pixel_in = inputs[0]
    logits_out = next((o for o in graph.output if len(_dims(o)) == 4), None)
    if logits_out is None:
        raise ValueError(f"no 4-d logits output among {[(o.name, _dims(o)) for o in graph.output]}")
    num_labels = _num_classes(model, logits_out)
    batch, channels, height, width = _dims(pixel_in)
    if channels != 3:
        raise ValueError(f"input {pixel_in.name!r} has {channels} channels, expected 3")
    mask_type = TensorProto.UINT8 if num_labels <= 256 else TensorProto.UINT16
    fixed_size = isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0

    def const(suffix: str, array: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(array, _P + suffix))
        return _P + suffix

    mean = const("mean", np.array(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1))
    std = const("std", np.array(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1))
    scale = const("scale", np.array(1.0 / 255.0, np.float32))
    graph.initializer.append(numpy_helper.from_array(np.zeros(2, np.int64), "output_size"))
    n = helper.make_node
    pre = [
        n("Cast", ["image"], [_P + "f"], to=TensorProto.FLOAT),
        n("Transpose", [_P + "f"], [_P + "nchw"], perm=[0, 3, 1, 2]),
        n("Mul", [_P + "nchw", scale], [_P + "unit"]),
        n("Sub", [_P + "unit", mean], [_P + "centred"]),
        n("Div", [_P + "centred", std], [pixel_in.name]),
    ]
    post = [
        n("Shape", ["image"], [_P + "in_shape"]),
        n("Slice", [_P + "in_shape", const("s1", np.array([1])), const("s3", np.array([3]))], [_P + "in_hw"]),
        n("Equal", ["output_size", const("zero", np.zeros(2, np.int64))], [_P + "is_default"]),
        n("Where", [_P + "is_default", _P + "in_hw", "output_size"], [_P + "out_hw"]),
        n("Shape", [logits_out.name], [_P + "logit_shape"]),
        n("Slice", [_P + "logit_shape", const("s0", np.array([0])), const("s2", np.array([2]))], [_P + "nc"]),
        n("Concat", [_P + "nc", _P + "out_hw"], [_P + "sizes"], axis=0),
        n(
            "Resize",
            [logits_out.name, "", "", _P + "sizes"],
            [_P + "upsampled"],
            mode="linear",
            coordinate_transformation_mode="pytorch_half_pixel",
        ),
        n("ArgMax", [_P + "upsampled"], [_P + "argmax"], axis=1, keepdims=0),
        n("Cast", [_P + "argmax"], ["mask"], to=mask_type),
    ]
    nodes = pre + list(graph.node) + post
    del graph.node[:]
    graph.node.extend(nodes)
    image_dims = [batch, height, width, 3] if fixed_size else [batch, "height", "width", 3]
    image_dims = [
        d if isinstance(d, int) and d > 0 else (d if isinstance(d, str) else "batch") for d in image_dims
    ]
    graph.input.remove(pixel_in)
    graph.input.insert(0, helper.make_tensor_value_info("image", TensorProto.UINT8, image_dims))
    graph.input.append(helper.make_tensor_value_info("output_size", TensorProto.INT64, [2]))
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info("mask", mask_type, [image_dims[0], "out_height", "out_width"])
    )
    id2label, palette, dataset = _labels(num_labels)
    meta = {
        "segformer.format": "1",
        "segformer.name": name,
        "segformer.variant": "unknown",
        "segformer.num_labels": str(num_labels),
        "segformer.id2label": json.dumps({str(k): v for k, v in id2label.items()}),
        "segformer.palette": json.dumps([list(c) for c in palette]),
        "segformer.image_mean": json.dumps(list(IMAGENET_MEAN)),
        "segformer.image_std": json.dumps(list(IMAGENET_STD)),
        "segformer.inference_size": json.dumps([height, width] if fixed_size else [512, 512]),
        "segformer.input_layout": "NHWC-uint8-RGB",
        "segformer.outputs": json.dumps(["mask"]),
        "segformer.mask_dtype": "uint8" if num_labels <= 256 else "uint16",
        "segformer.precision": "fp32",
        "segformer.source": source,
        "segformer.source_sha256": source_sha256,
        "segformer.labels": dataset,
        "segformer.wrapped_from": f"{pixel_in.name}{_dims(pixel_in)} -> {logits_out.name}{_dims(logits_out)}",
    }
    onnx.helper.set_model_props(model, meta)
    return model


def wrap_foreign_file(path: Path, out: Path) -> Path:
    """Wrap the foreign graph at ``path`` into ``out`` (written atomically)."""
    data = path.read_bytes()
    model = onnx.load_from_string(data)
    wrapped = wrap_foreign(model, path.stem, str(path), hashlib.sha256(data).hexdigest())
    onnx.checker.check_model(wrapped)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{id(wrapped)}")
    onnx.save(wrapped, tmp)
    tmp.replace(out)
    return out
