"""Wrap a foreign SegFormer ONNX (float ``pixel_values`` NCHW in, logits out) into the contract graph.

Uses the ``onnx`` package only (no torch): the nodes come from ``contract.graph.wrap_network`` (the same
torch-free wrapper the export puts around its own network: uint8 NHWC ``image`` → ImageNet mean/std →
NCHW; logits → bilinear resize to ``output_size`` → argmax → ``mask``); this module detects foreign
graphs, finds the class count, picks labels and writes the contract metadata.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx

from contract import labels as builtin
from contract.graph import MIN_OPSET, mask_dtype_for, wrap_network
from contract.metadata import PREFIX, build_metadata, package_version, set_metadata
from contract.spec import DEFAULT_INFERENCE_SIZE

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def is_contract(model: onnx.ModelProto) -> bool:
    return any(p.key == PREFIX + "format" for p in model.metadata_props)


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

    found = builtin.builtin_for(num_labels)
    if found is not None:
        id2label, palette = found
        return id2label, [tuple(c) for c in palette], "builtin"  # type: ignore[misc]
    palette = builtin.generated_palette(num_labels)
    return {i: f"class_{i}" for i in range(num_labels)}, list(palette), "generated"


def wrap_foreign(model: onnx.ModelProto, name: str, source: str, source_sha256: str) -> onnx.ModelProto:
    """Return a contract graph around ``model`` (the export's torch-free ``wrap_network`` does the nodes)."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:  # the wrapper's nodes need opset >= 15; convert the foreign graph up
        model = onnx.version_converter.convert_version(model, MIN_OPSET)
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(_dims(inputs[0])) != 4:
        raise ValueError(f"expected one NCHW float input, found {[(i.name, _dims(i)) for i in inputs]}")
    pixel_in = inputs[0]
    if not any("Conv" in node.op_type for node in graph.node):  # patch embeddings and the decode head
        raise ValueError(
            "not a SegFormer graph: it has no convolution (SegFormer's patch embeddings are convolutions)"
        )
    logits_out = next((o for o in graph.output if len(_dims(o)) == 4), None)
    if logits_out is None:
        raise ValueError(f"no 4-d logits output among {[(o.name, _dims(o)) for o in graph.output]}")
    batch, channels, height, width = _dims(pixel_in)
    if channels != 3:
        raise ValueError(f"input {pixel_in.name!r} has {channels} channels, expected 3")
    num_labels = _num_classes(model, logits_out)
    wrapped_from = f"{pixel_in.name}{_dims(pixel_in)} -> {logits_out.name}{_dims(logits_out)}"
    # wrap_network wants exactly one input and one output
    for value in [i for i in graph.input if i.name != pixel_in.name]:
        graph.input.remove(value)
    for value in [o for o in graph.output if o.name != logits_out.name]:
        graph.output.remove(value)
    mask_dtype = mask_dtype_for(num_labels)
    wrapped = wrap_network(model, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, mask_dtype=mask_dtype)
    # keep the foreign graph's fixed dimensions visible, so that the server caps batch and mode
    fixed_size = isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0
    image_dims = wrapped.graph.input[0].type.tensor_type.shape.dim[:3]
    fixed = (batch, height if fixed_size else 0, width if fixed_size else 0)
    for dim, value in zip(image_dims, fixed, strict=True):
        if isinstance(value, int) and value > 0:
            dim.ClearField("dim_param")
            dim.dim_value = value
    id2label, palette, dataset = _labels(num_labels)
    meta = build_metadata(
        name=name,
        variant="unknown",
        id2label=id2label,
        palette=palette,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        inference_size=(height, width) if fixed_size else DEFAULT_INFERENCE_SIZE,  # type: ignore[arg-type]
        outputs=["mask"],
        mask_dtype=mask_dtype,
        precision="fp32",
        source=source,
        source_sha256=source_sha256,
        versions={"segformer_serve": package_version(), "onnx": onnx.__version__, "opset": opset},
        labels=dataset,
        wrapped_from=wrapped_from,
    )
    set_metadata(wrapped, meta)
    return wrapped


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
