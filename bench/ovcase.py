"""One raw OpenVINO case: the serving graph compiled for the CPU and the steps the in-process loop times.

The graph is read like the server reads it (``server.openvino_pool.read_graph``: ``output_size`` made a
real input), compiled with ``INFERENCE_PRECISION_HINT`` (bf16 by default: the new ceiling on AMX CPUs),
``NUM_STREAMS`` = ``streams`` and ``INFERENCE_NUM_THREADS`` = the thread budget; one infer request per
stream, each looped in its own thread by ``bench.inproc.side_by_side`` (``infer`` releases the GIL).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from server import imaging

HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


class OvCase:
    """``steps[s](i)`` runs image ``i`` (mod the set) on stream ``s``'s infer request."""

    def __init__(self, graph: Path, threads: int, streams: int, precision: str, images: list[bytes]) -> None:
        import openvino as ov

        from server.openvino_pool import graph_metadata, read_graph

        core = ov.Core()
        model = read_graph(core, graph)
        config = {"INFERENCE_PRECISION_HINT": HINTS[precision], "NUM_STREAMS": streams}
        config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(model, "CPU", config)
        self.requests = [self.compiled.create_infer_request() for _ in range(streams)]
        meta = graph_metadata(model)
        height, width = (int(v) for v in json.loads(meta.get("segformer.inference_size", "[512, 512]")))
        decoded = [Image.open(io.BytesIO(b)).convert("RGB") for b in images]
        self.originals = [np.array([im.height, im.width], dtype=np.int64) for im in decoded]
        self.inputs = [imaging.resize_bilinear(im, (height, width))[None] for im in decoded]
        self.steps: list[Callable[[int], None]] = [self._step(r) for r in self.requests]
        self.steps[0](0)  # once before the threads start: first concurrent `infer` calls can deadlock

    def _step(self, request: object) -> Callable[[int], None]:
        def step(i: int) -> None:
            k = i % len(self.inputs)
            request.infer({"image": self.inputs[k], "output_size": self.originals[k]})  # type: ignore[attr-defined]

        return step
