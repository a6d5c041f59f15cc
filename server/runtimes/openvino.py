"""An OpenVINO pool (``server.runtimes.base.Pool``), behind the same batcher, metrics and errors.

A lane is an index into the infer requests of every compilation of the graph (``openvino_plan``): by
default each compilation is one stream of every core with two infer requests. Measured on 2 cores
against two 1-thread streams and against a solo all-core stream + two streams (docs/openvino.md): a
lone request takes 69 ms instead of 119 (a 1-thread stream) at 2-13 % fewer images/s under load and
~80 MB less RSS; the solo + two layout costs another compiled model's activations (+80-150 MB) for
the same latency. ``--sessions N`` gives N streams of ``cores / N`` threads. ``InferRequest.infer``
releases the GIL, so lanes run side by side in the pool's threads. Each input shape the pool serves
often gets its own static-shape compilation, about twice as fast as the dynamic one
(``server.runtimes.shapes``). Two lanes on different compilations (two shapes, or the two parts of the
``mixed`` plan: one image in stages 1-3 while another is in stage 4 + head) run at the same time,
each with every core: measured in-process, that pipelining gives ``mixed`` 23.5 img/s on 2 cores
against 20.0 with two 1-thread streams.

OpenVINO compiles the graph's batched stage (``contract.head.split``: image uint8 -> logits float32,
no ``output_size`` input); the per-image stage (upsampling + argmax at each image's size) is the
same fp32 numpy ``server.head.MaskHead`` as on the ORT pool, so the upsampling to full size is never
in reduced precision. Precisions: ``fp32``, ``bf16`` and ``fp16`` compile the whole network with that
hint; ``mixed`` cuts a ``segformer-export`` graph after stage 3 (``contract.head.STAGE_CUT``) and runs
stages 1-3 in bf16, stage 4 and the decode head in fp32. ``fp32`` is the default (``server.runtimes.base``);
the reduced ones are chosen by flag or per model, with their agreement measured on real photos in
docs/openvino.md (a load-time check on synthetic images told nothing about photos, so there is none).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import openvino as ov

from contract.head import STAGE_CUT, cut, split
from contract.spec import ModelSpec
from server.head import MaskHead
from server.runtimes.base import PoolPlan, Precision
from server.runtimes.lanes import Lanes
from server.runtimes.shapes import Chain, ShapeCache
from server.settings import Settings, usable_cores

log = logging.getLogger("segformer.openvino")
HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}  # INFERENCE_PRECISION_HINT values
LABELS = {**HINTS, "mixed": "bf16+f32"}  # what `providers` shows
RUNTIME_CACHE_CAPACITY = 256  # docs/openvino.md, "Memory over many shapes"


def openvino_plan(settings: Settings, cores: int) -> PoolPlan:
    """``--sessions N``: N streams of ``cores / N`` threads (or ``--intra-op-threads``); 0 (auto): one
    stream of every core (docs/openvino.md: the measured choice against two streams and solo + two)."""
    streams = settings.sessions or 1
    return PoolPlan(streams, settings.intra_op_threads or max(1, cores // streams))


class OpenVinoPool(Lanes[int]):
    """Infer requests over one graph, lent to one batch at a time (a ``server.runtimes.base.Pool``).

    A lane is an index: lane ``i`` runs on the ``i``-th infer requests of the compilation for its batch's
    shape (``ShapeCache``: static where compiled, else the dynamic one)."""

    runtime = "openvino"

    def __init__(
        self, model_path: Path, settings: Settings, precision: Precision, cores: int | None = None
    ) -> None:
        self.core = ov.Core()
        graph = onnx.load(str(model_path))
        meta = {p.key: p.value for p in graph.metadata_props}
        parts = split(graph)  # the batched stage (image -> logits) and the per-image head
        del graph
        whole = self.core.read_model(parts.body.SerializeToString())
        self.plan = plan = openvino_plan(settings, cores or usable_cores())
        self.spec = ModelSpec.from_graph(meta, _image_shape(whole))
        self.head = MaskHead(
            parts.mode, parts.topk, self.spec.mask_dtype, concurrency=cores or usable_cores()
        )
        models = {"whole": whole}  # ov.Models by part; only the served ones are kept after loading
        if precision == "mixed":
            halves = cut(parts.body, STAGE_CUT)
            if halves is None:
                raise ValueError(
                    "--precision mixed needs a graph from segformer-export (its stage outputs "
                    f"{', '.join(STAGE_CUT)}); use bf16 or fp32 for this graph"
                )
            front, back = (self.core.read_model(h.SerializeToString()) for h in halves)
            models.update(front=front, back=back)
        del parts
        fixed = self.spec.fixed_batch is not None and self.spec.fixed_size is not None
        capacity = 0 if fixed else settings.openvino_static_shapes  # a static graph has one shape
        self.precision: Precision = precision
        threads = plan.lanes * plan.lane_threads
        # without batching, at least two infer requests, so the next image waits on a lone stream while
        # one runs; with batching one per stream, so that requests queue into the next batch meanwhile
        # (a second request would take a smaller batch at once and split what would have been one)
        requests = plan.lanes if settings.max_batch_size > 1 else max(2, plan.lanes)
        serving = _parts(models, self.precision)
        del models
        height, width = self.spec.inference_size
        self.shapes = ShapeCache(
            lambda shape: Chain(serving, shape, self._compiler(plan.lanes, threads), requests),
            capacity,
            max_pixels=height * width,
        )
        compiled_in = self.shapes.try_add((1, height, width, 3))
        super().__init__(list(range(requests)), None, thread_prefix="openvino", streams=plan.lanes)
        self._prime()
        self.providers = [f"OpenVINO:CPU:{LABELS[self.precision]}"]
        log.info(
            "loaded %s: OpenVINO %s CPU %s, %d stream(s) of %d thread(s), %d infer requests, "
            "static shapes %s (%.2fs) of at most %d",
            model_path.name, ov.get_version(), self.precision, plan.lanes, plan.lane_threads, requests,
            self.shapes.shapes, compiled_in, capacity,
        )  # fmt: skip

    def _prime(self) -> None:
        """One small inference before any two threads call ``infer``: the first concurrent calls into the
        Python bindings can deadlock (seen with 2026.4: one thread inside a static initialiser waits for
        the GIL, the other holds the GIL and waits for that initialiser)."""
        height, width = self.spec.fixed_size or (64, 64)
        self.shapes.dynamic.run(0, np.zeros((1, height, width, 3), np.uint8))

    def _compiler(self, streams: int, threads: int) -> Callable[[ov.Model, str], ov.CompiledModel]:
        def compile_model(model: ov.Model, hint: str) -> ov.CompiledModel:
            config = {
                "INFERENCE_PRECISION_HINT": hint,
                "NUM_STREAMS": streams,
                "INFERENCE_NUM_THREADS": threads,
                # the kernels the CPU plugin specialises per input shape, cached (default 5000 entries):
                # with many native-mode sizes RSS grew ~1.4 MB a shape without end; 256 keeps it flat
                "CPU_RUNTIME_CACHE_CAPACITY": RUNTIME_CACHE_CAPACITY,
            }
            return self.core.compile_model(model, "CPU", config)

        return compile_model

    @property
    def on_cuda(self) -> bool:
        return False

    def _infer(self, session: int, images: np.ndarray) -> np.ndarray:
        return self.shapes.run(session, images)

    def close(self) -> None:
        super().close()
        self.shapes.close()


def _image_shape(model: ov.Model) -> list[Any]:
    shape = model.input("image").get_partial_shape()
    return [dim.get_length() if dim.is_static else None for dim in shape]


def _parts(models: dict[str, ov.Model], precision: Precision) -> list[tuple[ov.Model, str]]:
    """The models to run in order, each with its precision hint (``mixed``: bf16 front, f32 back)."""
    if precision == "mixed":
        return [(models["front"], HINTS["bf16"]), (models["back"], HINTS["fp32"])]
    return [(models["whole"], HINTS[precision])]
