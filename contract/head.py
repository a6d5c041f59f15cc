"""Split a contract graph into its batched stage and its per-image head (torch-free graph surgery).

``body``: ``image`` uint8 [N, H, W, 3] → ``logits`` float32 [N, C, h, w] — the network and its
normalisation, run on batches at the inference size. ``head``: ``logits`` [1, C, h, w], ``out_hw``
int64 [2] (the image's own size) and ``rows`` int64 [2] (start, end) → ``mask`` [1, end - start, W] —
bilinear upsampling + argmax for one band of output rows, so the full-resolution work of one image is
done in bounded tiles. The head uses the same nodes as the exported graph (``contract.upsample``, the
mode and K read from it), so body + head give the graph's own mask. Works on every graph exported so
far and on wrapped foreign graphs: both come from ``contract.graph.wrap_network``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from contract.graph import IMAGE, LOGITS, MASK, MIN_OPSET
from contract.upsample import DEFAULT_TOPK, upsample_argmax

HEAD_LOGITS = "logits"
HEAD_OUT_HW = "out_hw"
HEAD_ROWS = "rows"


@dataclass(frozen=True)
class Split:
    body: onnx.ModelProto
    head: onnx.ModelProto
    mode: str  # "topk" | "full"
    topk: int
    num_labels: int


def _upsample_of(graph: onnx.GraphProto) -> tuple[str, int]:
    """The graph's upsampling: ("topk", K) when it has the top-K nodes, else ("full", 0)."""
    init = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "TopK" and len(node.input) > 1 and node.input[1] in init:
            return "topk", int(numpy_helper.to_array(init[node.input[1]]).reshape(-1)[0])
    return "full", 0


def _prune(graph: onnx.GraphProto, output: str) -> list[onnx.NodeProto]:
    """The nodes ``output`` depends on, in graph order."""
    producer = {name: i for i, node in enumerate(graph.node) for name in node.output}
    needed: set[int] = set()
    stack = [output]
    while stack:
        index = producer.get(stack.pop())
        if index is None or index in needed:
            continue
        needed.add(index)
        stack.extend(graph.node[index].input)
    return [node for i, node in enumerate(graph.node) if i in needed]


def _body(model: onnx.ModelProto, logits: str, classes: int | str) -> onnx.ModelProto:
    graph = model.graph
    nodes = _prune(graph, logits)
    used = {name for node in nodes for name in node.input}
    body_graph = helper.make_graph(
        nodes,
        "segformer_body",
        [next(i for i in graph.input if i.name == IMAGE)],
        [
            helper.make_tensor_value_info(
                logits, TensorProto.FLOAT, ["batch", classes, "logits_h", "logits_w"]
            )
        ],
        [i for i in graph.initializer if i.name in used],
    )
    body = helper.make_model(body_graph, opset_imports=list(model.opset_import))
    body.ir_version = model.ir_version
    return body


def _stage(
    model: onnx.ModelProto,
    name: str,
    nodes: list[onnx.NodeProto],
    consts: dict[str, np.ndarray],
    classes: int,
    output: onnx.ValueInfoProto,
) -> onnx.ModelProto:
    """A graph of ``nodes`` over the head's inputs (logits, out_hw, rows) with one ``output``."""
    rows = [
        helper.make_node("Gather", [HEAD_ROWS, "head_zero"], ["rows_start"]),
        helper.make_node("Gather", [HEAD_ROWS, "head_one"], ["rows_end"]),
    ]
    consts |= {"head_zero": np.array(0, np.int64), "head_one": np.array(1, np.int64)}
    logits = helper.make_tensor_value_info(
        HEAD_LOGITS, TensorProto.FLOAT, [1, classes, "logits_h", "logits_w"]
    )
    graph = helper.make_graph(
        rows + nodes,
        name,
        [
            logits,
            helper.make_tensor_value_info(HEAD_OUT_HW, TensorProto.INT64, [2]),
            helper.make_tensor_value_info(HEAD_ROWS, TensorProto.INT64, [2]),
        ],
        [output],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    opset = max(MIN_OPSET, next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0))
    stage = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    stage.ir_version = max(model.ir_version, 8)
    return stage


def _head(model: onnx.ModelProto, mode: str, topk: int, classes: int, mask_type: int) -> onnx.ModelProto:
    consts: dict[str, np.ndarray] = {}
    nodes = [
        *upsample_argmax(
            HEAD_LOGITS,
            HEAD_OUT_HW,
            "labels",
            mode=mode,
            consts=consts,
            num_labels=classes,
            topk=topk or DEFAULT_TOPK,
            rows=("rows_start", "rows_end"),
        ),
        helper.make_node("Cast", ["labels"], [MASK], to=mask_type),
    ]
    output = helper.make_tensor_value_info(MASK, mask_type, [1, "rows", "width"])
    return _stage(model, "segformer_head", nodes, consts, classes, output)


def split(model: onnx.ModelProto) -> Split:
    """``Split`` of a contract graph (see the module doc); ValueError if it has no ``logits`` tensor."""
    graph = model.graph
    produced = {name for node in graph.node for name in node.output}
    # fp16 networks: the wrapper casts their logits to float32 ("logits_f32") before upsampling
    logits = "logits_f32" if "logits_f32" in produced else LOGITS
    if logits not in produced:
        raise ValueError("not a contract graph: no 'logits' tensor to split at")
    mask = next((o for o in graph.output if o.name == MASK), None)
    if mask is None:
        raise ValueError("not a contract graph: no 'mask' output")
    mode, topk = _upsample_of(graph)
    classes = _classes(model, logits)
    body = _body(model, logits, classes or "classes")
    head = _head(model, mode, topk, classes, mask.type.tensor_type.elem_type)
    return Split(body, head, mode, topk, classes)


def _classes(model: onnx.ModelProto, logits: str) -> int:
    for prop in model.metadata_props:
        if prop.key == "segformer.num_labels":
            return int(prop.value)
    raise ValueError("not a contract graph: no segformer.num_labels")
