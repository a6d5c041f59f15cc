"""Split a contract graph into its batched stage and its per-image head (torch-free graph surgery).

``body``: ``image`` uint8 [N, H, W, 3] → ``logits`` float32 [N, C, h, w] — the network and its
normalisation, run on batches at the inference size. The head (bilinear upsampling + argmax at each
image's own size) is described by the graph's upsampling ``mode`` and K, read from its nodes, and run
per image by ``server.head`` with the arithmetic of ``contract.upsample``, so body + head give the
graph's own mask. Works on every graph exported so far and on wrapped foreign graphs: both come from
``contract.graph.wrap_network``.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import TensorProto, helper, numpy_helper

from contract.graph import IMAGE, LOGITS, MASK
from contract.upsample import DEFAULT_TOPK

#: where the OpenVINO ``mixed`` plan cuts a graph from ``segformer-export``: the outputs of stages 1-3
#: (``model/``'s module names); stage 4 and the decode head run after them (docs/openvino.md)
STAGE_CUT = tuple(f"/stages.{k}/Reshape_output_0" for k in range(3))


@dataclass(frozen=True)
class Split:
    body: onnx.ModelProto
    mode: str  # "topk" | "full"
    topk: int


def _upsample_of(graph: onnx.GraphProto) -> tuple[str, int]:
    """The graph's upsampling: ("topk", K) when it has the top-K nodes, else ("full", 0)."""
    init = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "TopK" and len(node.input) > 1 and node.input[1] in init:
            return "topk", int(numpy_helper.to_array(init[node.input[1]]).reshape(-1)[0])
    return "full", 0


def _prune(graph: onnx.GraphProto, *outputs: str, stop: frozenset[str] = frozenset()) -> list[onnx.NodeProto]:
    """The nodes ``outputs`` depend on, in graph order, not looking past the tensors in ``stop``."""
    producer = {name: i for i, node in enumerate(graph.node) for name in node.output}
    needed: set[int] = set()
    stack = list(outputs)
    while stack:
        name = stack.pop()
        index = None if name in stop else producer.get(name)
        if index is None or index in needed:
            continue
        needed.add(index)
        stack.extend(graph.node[index].input)
    return [node for i, node in enumerate(graph.node) if i in needed]


def _part(
    model: onnx.ModelProto,
    nodes: list[onnx.NodeProto],
    name: str,
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
) -> onnx.ModelProto:
    """A model of ``nodes`` of ``model`` (with the initializers they use, its opsets and IR version)."""
    used = {tensor for node in nodes for tensor in node.input}
    initializers = [i for i in model.graph.initializer if i.name in used]
    part = helper.make_model(
        helper.make_graph(nodes, name, inputs, outputs, initializers), opset_imports=list(model.opset_import)
    )
    part.ir_version = model.ir_version
    return part


def _body(model: onnx.ModelProto, logits: str, classes: int) -> onnx.ModelProto:
    graph = model.graph
    output = helper.make_tensor_value_info(
        logits, TensorProto.FLOAT, ["batch", classes, "logits_h", "logits_w"]
    )
    image = next(i for i in graph.input if i.name == IMAGE)
    return _part(model, _prune(graph, logits), "segformer_body", [image], [output])


def split(model: onnx.ModelProto) -> Split:
    """``Split`` of a contract graph (see the module doc); ValueError if it has no ``logits`` tensor."""
    graph = model.graph
    produced = {name for node in graph.node for name in node.output}
    # fp16 networks: the wrapper casts their logits to float32 ("logits_f32") before upsampling
    logits = "logits_f32" if "logits_f32" in produced else LOGITS
    if logits not in produced:
        raise ValueError("not a contract graph: no 'logits' tensor to split at")
    if not any(o.name == MASK for o in graph.output):
        raise ValueError("not a contract graph: no 'mask' output")
    mode, topk = _upsample_of(graph)
    body = _body(model, logits, _classes(model))
    return Split(body, mode, topk or DEFAULT_TOPK)


def cut(body: onnx.ModelProto, at: tuple[str, ...]) -> tuple[onnx.ModelProto, onnx.ModelProto] | None:
    """``body`` in two: ``image`` → the tensors ``at``, and ``at`` → its output (the same nodes, shared
    initializers copied); None when a tensor is missing or the second part needs more than ``at``."""
    typed = onnx.shape_inference.infer_shapes(body).graph
    infos = {v.name: v for v in typed.value_info}
    if any(name not in infos for name in at):
        return None
    graph, output = body.graph, body.graph.output[0]
    front_nodes = _prune(graph, *at)
    back_nodes = _prune(graph, output.name, stop=frozenset(at))
    known = set(at) | {i.name for i in graph.initializer} | {o for n in back_nodes for o in n.output}
    if any(name and name not in known for node in back_nodes for name in node.input):
        return None

    cut_infos = [infos[name] for name in at]
    return (
        _part(body, front_nodes, "segformer_part", list(graph.input), cut_infos),
        _part(body, back_nodes, "segformer_part", cut_infos, [output]),
    )


def _classes(model: onnx.ModelProto) -> int:
    for prop in model.metadata_props:
        if prop.key == "segformer.num_labels":
            return int(prop.value)
    raise ValueError("not a contract graph: no segformer.num_labels")
