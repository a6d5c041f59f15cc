"""fp32 -> fp16 conversion of a network graph that keeps numerically fragile ops in fp32 (no torch).

Every node fed (through data, not through ``Shape``) by the graph input runs in fp16 unless its op is in
``KEEP_FP32`` (LayerNorm, Softmax, reductions, ...): those get Casts to fp32 on the way in and their
outputs are cast back where an fp16 node reads them. Float tensors that do not depend on the image
(shape arithmetic, scalar constants) stay fp32; fp16 nodes read fp16 copies of weights and Casts of the
rest, which ONNX Runtime folds at load time. The graph's float inputs and outputs become fp16.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

KEEP_FP32 = frozenset(
    {
        "LayerNormalization",
        "GroupNormalization",
        "InstanceNormalization",
        "BatchNormalization",
        "Softmax",
        "LogSoftmax",
        "ReduceMean",
        "ReduceSum",
        "ReduceSumSquare",
        "ReduceL2",
        "ReduceLogSumExp",
        "Pow",
        "Sqrt",
        "Exp",
        "Cast",
    }
)
# ops that only look at shapes (or pass any type through without arithmetic): never cast their inputs
TYPE_AGNOSTIC = frozenset({"Shape", "Size"})
# float inputs that are parameters, not data (Resize roi/scales must stay fp32)
NON_DATA_INPUTS = {"Resize": {1, 2}, "Upsample": {1}}
FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    values = [*graph.input, *graph.output, *graph.value_info]
    names = {v.name for v in values if v.type.tensor_type.elem_type == FLOAT}
    names |= {t.name for t in graph.initializer if t.data_type == FLOAT}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute[0].t.data_type == FLOAT:
            names.add(node.output[0])
    return names


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return an fp16 copy of ``model`` (a network graph: float input(s) -> float output(s))."""
    floats = _float_tensors(model)
    src = model.graph
    initializers = {t.name: t for t in src.initializer}
    tainted = {v.name for v in src.input if v.name in floats}
    half: set[str] = set(tainted)  # tensors that hold fp16 values in the new graph
    casts: dict[tuple[str, int], str] = {}
    nodes: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []

    def as_type(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            casts[key] = f"{name}__{'fp16' if to == HALF else 'fp32'}"
            if to == HALF and name in initializers:
                array = numpy_helper.to_array(initializers[name]).astype(np.float16)
                new_inits.append(numpy_helper.from_array(array, casts[key]))
            else:
                nodes.append(helper.make_node("Cast", [name], [casts[key]], to=to))
        return casts[key]

    for node in src.node:
        inputs = list(node.input)
        is_tainted = node.op_type not in TYPE_AGNOSTIC and any(i in tainted for i in inputs)
        in_half = is_tainted and node.op_type not in KEEP_FP32
        skip = NON_DATA_INPUTS.get(node.op_type, set())
        for pos, name in enumerate(inputs):
            if not name or pos in skip or node.op_type in TYPE_AGNOSTIC:
                continue
            if in_half and name in floats and name not in half:
                inputs[pos] = as_type(name, HALF)
            elif not in_half and name in half:
                inputs[pos] = as_type(name, FLOAT)
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.input[:] = inputs
        nodes.append(new)
        if is_tainted:
            tainted.update(o for o in node.output if o)
        if in_half:
            half.update(o for o in node.output if o in floats)

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_inits)
    used = {i for n in graph.node for i in n.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for value in [*graph.input, *graph.output]:
        if value.name in half:
            value.type.tensor_type.elem_type = HALF
    for value in graph.output:
        if value.name in floats and value.name not in half:  # produced in fp32: cast it for the output
            raise ValueError(f"output {value.name} is computed in fp32 by a kept op; nothing to convert")
    del graph.value_info[:]
    return out
