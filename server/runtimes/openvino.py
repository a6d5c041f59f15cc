"""An OpenVINO pool with the ``SessionPool`` interface, behind the same batcher, metrics and errors.

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
hint; ``mixed`` (the default on CPUs with native bf16) cuts a ``segformer-export`` graph after stage
3 (``contract.head.STAGE_CUT``) and runs stages 1-3 in bf16, stage 4 and the decode head in fp32
(the measured trade: docs/openvino.md). A graph without the cut points runs fp32 under ``auto``.

Reduced precisions are checked when the pool loads: masks on a few smooth synthetic images at the
verification shapes are compared with an fp32 compilation; below ``--bf16-min-agreement`` the pool
recompiles in fp32 and logs a warning (``fallback`` in ``/v1/model``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import openvino as ov
from PIL import Image

from contract.head import STAGE_CUT, cut, split
from contract.spec import ModelSpec
from server.head import MaskHead
from server.runtimes.cpufeatures import Precision
from server.runtimes.lanes import Lanes
from server.runtimes.onnxruntime import PoolPlan
from server.runtimes.shapes import Chain, Shape, ShapeCache
from server.settings import Settings, usable_cores

log = logging.getLogger("segformer.openvino")
HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}  # INFERENCE_PRECISION_HINT values
LABELS = {**HINTS, "mixed": "bf16+f32"}  # what `providers` shows
CHECK_SHAPES = ((512, 512), (384, 640))  # (height, width), scaled to the graph's inference size


@dataclass(frozen=True)
class PrecisionCheck:
    """The load-time check of a reduced precision against fp32 (``agreement``: worst image)."""

    asked: Precision
    agreement: float | None  # None: fp32 asked, nothing to check
    fallback: bool


def check_images(inference_size: tuple[int, int], fixed: bool) -> list[np.ndarray]:
    """Smooth deterministic uint8 ``[1, H, W, 3]`` images (blobs and edges, not white noise)."""
    rng = np.random.default_rng(0)
    height, width = inference_size
    shapes = (
        [inference_size]
        if fixed
        else [(h * height // 512 // 32 * 32, w * width // 512 // 32 * 32) for h, w in CHECK_SHAPES]
    )
    images = []
    for h, w in shapes:
        coarse = rng.integers(0, 256, (max(2, h // 48), max(2, w // 48), 3), dtype=np.uint8)
        images.append(np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BILINEAR))[None])
    return images


def openvino_plan(settings: Settings, cores: int) -> PoolPlan:
    """``--sessions N``: N streams of ``cores / N`` threads (or ``--intra-op-threads``); 0 (auto): one
    stream of every core (docs/openvino.md: the measured choice against two streams and solo + two)."""
    streams = settings.sessions or 1
    return PoolPlan(streams, settings.intra_op_threads or max(1, cores // streams))


class OpenVinoPool(Lanes[int]):
    """Infer requests over one graph, lent to one batch at a time (same interface as ``SessionPool``).

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
        self.upsample = parts.mode
        halves = cut(parts.body, STAGE_CUT) if precision == "mixed" else None
        models = {"whole": whole}  # ov.Models by part; only the served ones are kept after loading
        if halves is not None:
            front, back = (self.core.read_model(h.SerializeToString()) for h in halves)
            models.update(front=front, back=back)
        del parts, halves
        precision = _mixed_or_fp32(precision, "front" in models, auto=settings.precision == "auto")
        fixed = self.spec.fixed_batch is not None and self.spec.fixed_size is not None
        capacity = 0 if fixed else settings.openvino_static_shapes  # a static graph has one shape
        self.check = self._check_precision(models, precision, settings.bf16_min_agreement, capacity > 0)
        self.precision: Precision = "fp32" if self.check.fallback else precision
        threads = plan.lanes * plan.lane_threads
        # at least two infer requests, so the next batch waits on a lone stream while one runs
        requests = max(2, plan.lanes)
        serving = _parts(models, self.precision)
        del models
        self.shapes = ShapeCache(
            lambda shape: Chain(serving, shape, self._compiler(plan.lanes, threads), requests), capacity
        )
        height, width = self.spec.inference_size
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
            }
            return self.core.compile_model(model, "CPU", config)

        return compile_model

    def _check_precision(
        self, models: dict[str, ov.Model], precision: Precision, minimum: float, static: bool
    ) -> PrecisionCheck:
        """Masks of ``precision`` vs fp32 on the check images, each compiled as it will be served (for its
        static shape when static shapes are on; one stream of every core)."""
        if precision == "fp32":
            return PrecisionCheck(precision, None, fallback=False)
        start = time.perf_counter()
        compile_model = self._compiler(1, self.plan.lanes * self.plan.lane_threads)
        scores = []
        for image in check_images(self.spec.inference_size, self.spec.fixed_size is not None):
            shape: Shape | None = tuple(image.shape) if static else None
            size = (image.shape[1], image.shape[2])
            chains = [Chain(_parts(models, p), shape, compile_model, 1) for p in (precision, "fp32")]
            masks = [self.head.run(chain.run(0, image)[0], size) for chain in chains]
            scores.append(float(np.mean(masks[0] == masks[1])))
        worst = min(scores)
        fallback = worst < minimum
        log.log(
            logging.WARNING if fallback else logging.INFO,
            "%s check: masks agree with fp32 on %.3f %% of pixels (worst of %d images, %.1fs)%s",
            precision, 100 * worst, len(scores), time.perf_counter() - start,
            f" < {100 * minimum:.2f} %: serving fp32 instead" if fallback else "",
        )  # fmt: skip
        return PrecisionCheck(precision, worst, fallback)

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


def _mixed_or_fp32(precision: Precision, has_cut: bool, auto: bool) -> Precision:
    """``mixed`` needs the stage cut: without it ``auto`` serves fp32, an explicit ask is an error."""
    if precision != "mixed" or has_cut:
        return precision
    if not auto:
        raise ValueError(
            "--precision mixed needs a graph from segformer-export (its stage outputs "
            f"{', '.join(STAGE_CUT)}); use bf16 or fp32 for this graph"
        )
    log.info("no stage outputs to cut at (not a segformer-export graph): fp32 instead of mixed")
    return "fp32"


def _parts(models: dict[str, ov.Model], precision: Precision) -> list[tuple[ov.Model, str]]:
    """The models to run in order, each with its precision hint (``mixed``: bf16 front, f32 back)."""
    if precision == "mixed":
        return [(models["front"], HINTS["bf16"]), (models["back"], HINTS["fp32"])]
    return [(models["whole"], HINTS[precision])]
