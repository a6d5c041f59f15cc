"""One raw OpenVINO case: the serving graph compiled for the CPU and the steps the in-process loop times.

The whole contract graph (network, upsampling and argmax) runs in OpenVINO: ``read_graph`` makes its
``output_size`` initializer-input a real input (OpenVINO freezes it into a constant), then it is
compiled with ``INFERENCE_PRECISION_HINT`` (bf16 by default: the new ceiling on AMX CPUs),
``NUM_STREAMS`` = ``streams`` and ``INFERENCE_NUM_THREADS`` = the thread budget; one infer request per
stream, each looped in its own thread by ``bench.inproc.side_by_side`` (``infer`` releases the GIL).
``static``: the image input reshaped to ``[1, H, W, 3]`` at the inference size first (what a user of
raw OpenVINO does for a fixed size: the CPU plugin runs static shapes about twice as fast).
``output="logits"``: the network alone, the graph's batched stage as the server compiles it
(``contract.head.split``: image -> logits, no upsampling or argmax), what an image's inference costs.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from PIL import Image

from contract.head import split
from server import imaging

HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


def read_graph(core: Any, path: Path) -> Any:
    """The graph with ``output_size`` as a real ``[2]`` int64 input (OpenVINO freezes the initializer)."""
    import openvino as ov
    import openvino.opset13 as opset

    model = core.read_model(str(path))
    if any("output_size" in port.get_names() for port in model.inputs):
        return model
    for node in model.get_ordered_ops():
        if node.get_type_name() == "Constant" and "output_size" in node.output(0).get_names():
            param = opset.parameter([2], ov.Type.i64, name="output_size")
            param.output(0).set_names({"output_size"})
            node.output(0).replace(param.output(0))
            model.add_parameters([param])
            model.validate_nodes_and_infer_types()
            break
    return model


def graph_metadata(model: Any) -> dict[str, str]:
    """The ONNX ``metadata_props`` (OpenVINO keeps them under ``rt_info["framework"]``)."""
    if not model.has_rt_info(["framework"]):
        return {}
    framework = model.get_rt_info(["framework"]).astype(dict)
    return {str(key): value.astype(str) for key, value in framework.items()}


class OvCase:
    """``steps[s](i)`` runs image ``i`` (mod the set) on stream ``s``'s infer request."""

    def __init__(
        self,
        graph: Path,
        threads: int,
        streams: int,
        precision: str,
        images: list[bytes],
        static: bool = False,
        output: Literal["mask", "logits"] = "mask",
    ) -> None:
        import openvino as ov

        core = ov.Core()
        if output == "logits":  # the batched stage alone: no output_size input to make real
            proto = onnx.load(str(graph))
            meta = {prop.key: prop.value for prop in proto.metadata_props}
            model = core.read_model(split(proto).body.SerializeToString())
        else:
            model = read_graph(core, graph)
            meta = graph_metadata(model)
        height, width = (int(v) for v in json.loads(meta.get("segformer.inference_size", "[512, 512]")))
        if static:
            model.reshape({"image": [1, height, width, 3]})
        config = {"INFERENCE_PRECISION_HINT": HINTS[precision], "NUM_STREAMS": streams}
        config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(model, "CPU", config)
        self.requests = [self.compiled.create_infer_request() for _ in range(streams)]
        decoded = [Image.open(io.BytesIO(b)).convert("RGB") for b in images]
        self.originals = [np.array([im.height, im.width], dtype=np.int64) for im in decoded]
        self.inputs = [imaging.resize_bilinear(im, (height, width))[None] for im in decoded]
        self.with_size = output == "mask"
        self.steps: list[Callable[[int], None]] = [self._step(r) for r in self.requests]
        self.steps[0](0)  # once before the threads start: first concurrent `infer` calls can deadlock

    def _step(self, request: object) -> Callable[[int], None]:
        def step(i: int) -> None:
            k = i % len(self.inputs)
            feed = {"image": self.inputs[k]}
            if self.with_size:
                feed["output_size"] = self.originals[k]
            request.infer(feed)  # type: ignore[attr-defined]

        return step
