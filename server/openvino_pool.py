"""An OpenVINO pool with the ``SessionPool`` interface, behind the same batcher, metrics and errors.

The lanes are the infer requests of one compiled model (``openvino_plan``): by default one stream of
every core with two infer requests (the next batch waits on the stream while one runs). Measured on 2
cores against two 1-thread streams and against a solo all-core stream + two streams (docs/openvino.md):
a lone request takes 69 ms instead of 119 (a 1-thread stream) at 2-13 % fewer images/s under load and
~80 MB less RSS; the solo + two layout costs another compiled model's activations (+80-150 MB) for
the same latency. ``--sessions N`` gives N streams of ``cores / N`` threads. ``InferRequest.infer``
releases the GIL, so lanes run side by side in the pool's threads.

OpenVINO compiles the graph's batched stage (``contract.head.split``: image uint8 -> logits float32,
no ``output_size`` input); the per-image stage (upsampling + argmax at each image's size) is the
same fp32 numpy ``server.head.MaskHead`` as on the ORT pool, so only the network runs in bf16 and the
upsampling to full size never does.

bf16 and fp16 are checked when the pool loads: masks on a few smooth synthetic images at the
verification shapes are compared with an fp32 compilation; below ``--bf16-min-agreement`` the pool
recompiles in fp32 and logs a warning (``fallback`` in ``/v1/model``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import openvino as ov
from PIL import Image

from contract.head import split
from contract.spec import ModelSpec
from server.cpufeatures import Precision
from server.head import MaskHead
from server.lanes import Lanes
from server.pool import PoolPlan
from server.settings import Settings, usable_cores

log = logging.getLogger("segformer.openvino")
HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
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


class OpenVinoPool(Lanes[ov.InferRequest]):
    """Infer requests over one graph, lent to one batch at a time (same interface as ``SessionPool``)."""

    runtime = "openvino"

    def __init__(
        self, model_path: Path, settings: Settings, precision: Precision, cores: int | None = None
    ) -> None:
        self.core = ov.Core()
        graph = onnx.load(str(model_path))
        meta = {p.key: p.value for p in graph.metadata_props}
        parts = split(graph)  # the batched stage (image -> logits) and the per-image head
        del graph
        self._model = self.core.read_model(parts.body.SerializeToString())
        self.plan = plan = openvino_plan(settings, cores or usable_cores())
        self.spec = ModelSpec.from_graph(meta, self._image_shape())
        self.head = MaskHead(
            parts.mode, parts.topk, self.spec.mask_dtype, concurrency=cores or usable_cores()
        )
        self.upsample = parts.mode
        self.check = self._check_precision(precision, settings.bf16_min_agreement)
        self.precision: Precision = "fp32" if self.check.fallback else precision
        lanes_model = self._compile(self.precision, plan.lanes, plan.lanes * plan.lane_threads)
        # at least two infer requests, so the next batch waits on a lone stream while one runs
        lanes = [lanes_model.create_infer_request() for _ in range(max(2, plan.lanes))]
        super().__init__(lanes, None, thread_prefix="openvino", streams=plan.lanes)
        self._prime()
        self.providers = [f"OpenVINO:CPU:{HINTS[self.precision]}"]
        log.info(
            "loaded %s: OpenVINO %s CPU %s, %d stream(s) of %d thread(s), %d infer requests",
            model_path.name, ov.get_version(), self.precision, plan.lanes, plan.lane_threads, len(lanes),
        )  # fmt: skip

    def _prime(self) -> None:
        """One small inference before any two threads call ``infer``: the first concurrent calls into the
        Python bindings can deadlock (seen with 2026.4: one thread inside a static initialiser waits for
        the GIL, the other holds the GIL and waits for that initialiser)."""
        height, width = self.spec.fixed_size or (64, 64)
        self._infer(self.lanes[0], np.zeros((1, height, width, 3), np.uint8))

    def _image_shape(self) -> list[Any]:
        shape = self._model.input("image").get_partial_shape()
        return [dim.get_length() if dim.is_static else None for dim in shape]

    def _compile(self, precision: Precision, streams: int, threads: int) -> ov.CompiledModel:
        config = {
            "INFERENCE_PRECISION_HINT": HINTS[precision],
            "NUM_STREAMS": streams,
            "INFERENCE_NUM_THREADS": threads,
        }
        return self.core.compile_model(self._model, "CPU", config)

    def _check_precision(self, precision: Precision, minimum: float) -> PrecisionCheck:
        if precision == "fp32":
            return PrecisionCheck(precision, None, fallback=False)
        start = time.perf_counter()
        threads = self.plan.lanes * self.plan.lane_threads
        reduced, full = (self._compile(p, 1, threads) for p in (precision, "fp32"))
        scores = []
        for image in check_images(self.spec.inference_size, self.spec.fixed_size is not None):
            size = (image.shape[1], image.shape[2])
            masks = [
                self.head.run(self._infer(m.create_infer_request(), image)[0], size) for m in (reduced, full)
            ]
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

    @staticmethod
    def _infer(request: ov.InferRequest, images: np.ndarray) -> np.ndarray:
        return request.infer({"image": np.ascontiguousarray(images)}, share_inputs=True)["logits"]
