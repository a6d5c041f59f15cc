"""The data plane: the only thing the REST and gRPC transports call.

``segment`` decodes, preprocesses (``resize`` like the reference processor, or ``native``), waits in the
batcher, runs, and returns the mask at the original size with per-class statistics and stage timings.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel

from contract.spec import ModelSpec
from server import errors, imaging
from server.batcher import Batcher
from server.metrics import IN_FLIGHT, MODEL_INFO, STAGE_SECONDS
from server.pool import SessionPool
from server.settings import Settings

log = logging.getLogger("segformer.dataplane")
Mode = Literal["resize", "native"]


@dataclass
class SegmentRequest:
    image: bytes
    mode: Mode | None = None
    deadline: float | None = None  # time.monotonic() based; None = the server default
    transport: Literal["rest", "grpc"] = "rest"
    endpoint: str = "segment"


class ClassStat(BaseModel):
    id: int
    label: str
    pixels: int
    fraction: float


@dataclass
class SegmentResult:
    """A mask and what the transports answer with; ``classes`` is computed on first use, in the worker
    thread where the transport encodes the response (one thread hop fewer per request)."""

    mask: np.ndarray  # [H, W] uint8 | uint16 at the original size
    width: int
    height: int
    spec: ModelSpec
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    image: Image.Image | None = None  # the decoded RGB image

    @cached_property
    def classes(self) -> list[ClassStat]:
        start = time.monotonic()
        classes = _class_stats(self.mask, self.spec)
        self.timings["postprocess"] = time.monotonic() - start
        STAGE_SECONDS.labels("postprocess").observe(self.timings["postprocess"])
        return classes


class ModelClass(BaseModel):
    id: int
    label: str
    color: tuple[int, int, int]


class Batching(BaseModel):
    max_batch_size: int
    max_queue_delay_ms: float
    max_queue_size: int
    sessions: int  # run side by side
    intra_op_threads: int  # each
    solo_session_threads: int  # 0: none; else the all-core session a lone request runs on


class ModelDescription(BaseModel):
    name: str
    variant: str
    num_labels: int
    classes: list[ModelClass]
    inference_size: tuple[int, int]  # (height, width)
    mode: Mode
    modes: list[Mode]
    native_max_side: int
    mask_dtype: str
    precision: str
    providers: list[str]
    batching: Batching
    source: str
    foreign: bool


def _class_stats(mask: np.ndarray, spec: ModelSpec) -> list[ClassStat]:
    """Pixels and fraction of the image per class present in ``mask``."""
    if mask.dtype == np.uint8:  # PIL's C histogram: no int64 copy of the mask, unlike np.bincount
        counts = np.asarray(Image.fromarray(mask).histogram(), dtype=np.int64)
    else:
        counts = np.bincount(mask.ravel(), minlength=spec.num_labels)
    total = float(mask.size)
    return [
        ClassStat(id=int(i), label=spec.label(int(i)), pixels=int(counts[i]), fraction=counts[i] / total)
        for i in np.flatnonzero(counts)
    ]


def _prepare(data: bytes, mode: Mode, s: Settings, spec: ModelSpec) -> tuple[Image.Image, np.ndarray, float]:
    """Decode and resize in one worker-thread hop: (image, model input, when decoding ended)."""
    image = imaging.open_image(data, s.max_image_pixels, s.max_image_side)
    decoded_at = time.monotonic()
    if mode == "resize":
        size = spec.inference_size
    else:
        size = imaging.native_size(image.height, image.width, s.native_max_side)
    return image, imaging.resize_bilinear(image, size), decoded_at


class DataPlane:
    """Created before the model is loaded (so transports can answer health checks); ``load`` fills it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool: SessionPool | None = None
        self.batcher: Batcher | None = None
        self.ready = False
        self.draining = False  # set on SIGTERM: readiness fails, accepted and new requests still run
        self._description: ModelDescription | None = None
        self._palette = np.zeros((1, 3), np.uint8)

    async def start(self, pool: SessionPool) -> None:
        """Attach a loaded pool, warm it up (in a thread) and become ready."""
        s = self.settings
        seconds = await asyncio.to_thread(pool.warm_up, s.warmup_runs)
        log.info("warm-up: %d run(s) per session in %.2fs", s.warmup_runs, seconds)
        self.pool = pool
        delay = s.max_queue_delay_ms / 1000
        max_batch = s.max_batch_size or (8 if pool.on_cuda else 1)  # batches buy no CPU throughput (bench/)
        self.batcher = Batcher(pool, max_batch, delay, s.max_queue_size, fill_only_while_arriving=True)
        self.batcher.start()
        self._description = self._describe(pool)
        self._palette = imaging.palette_array(pool.spec.palette, pool.spec.num_labels)
        d = self._description
        MODEL_INFO.labels(
            d.name, d.variant, str(d.num_labels), d.precision, ",".join(d.providers), d.mode, str(d.foreign)
        ).set(1)
        self.ready = True

    def _describe(self, pool: SessionPool) -> ModelDescription:
        spec, s = pool.spec, self.settings
        palette = imaging.palette_array(spec.palette, spec.num_labels)
        return ModelDescription(
            name=spec.name,
            variant=spec.variant,
            num_labels=spec.num_labels,
            classes=[
                ModelClass(id=i, label=spec.label(i), color=tuple(int(c) for c in palette[i]))
                for i in range(spec.num_labels)
            ],
            inference_size=spec.inference_size,
            mode=self._default_mode(),
            modes=["resize"] if spec.fixed_size else ["resize", "native"],
            native_max_side=s.native_max_side,
            mask_dtype=str(spec.mask_dtype),
            precision=spec.precision,
            providers=pool.providers,
            batching=Batching(
                max_batch_size=self.batcher.max_batch_size if self.batcher else s.max_batch_size,
                max_queue_delay_ms=s.max_queue_delay_ms,
                max_queue_size=s.max_queue_size,
                sessions=pool.size,
                intra_op_threads=pool.plan.lane_threads,
                solo_session_threads=pool.plan.solo_threads,
            ),
            source=spec.source,
            foreign=spec.foreign,
        )

    def _default_mode(self) -> Mode:
        fixed = self.pool is not None and self.pool.spec.fixed_size is not None
        return "resize" if fixed else self.settings.mode

    def model_info(self) -> ModelDescription:
        if self._description is None:
            raise errors.not_ready()
        return self._description

    @property
    def palette(self) -> np.ndarray:
        """``[C, 3]`` uint8 class colours (for overlays)."""
        return self._palette

    async def segment(self, request: SegmentRequest) -> SegmentResult:
        """Segment one image; raises ``ServeError`` (transports record requests and errors)."""
        IN_FLIGHT.labels(request.transport).inc()
        try:
            return await self._segment(request)
        finally:
            IN_FLIGHT.labels(request.transport).dec()

    async def _segment(self, request: SegmentRequest) -> SegmentResult:
        if not self.ready or self.pool is None or self.batcher is None:
            raise errors.not_ready()
        s, spec = self.settings, self.pool.spec
        start = time.monotonic()
        deadline = request.deadline if request.deadline is not None else start + s.request_timeout_ms / 1000
        mode = request.mode or self._default_mode()
        if mode == "native" and spec.fixed_size is not None:
            raise errors.invalid_argument(
                f"this graph has a fixed input size {spec.fixed_size}; use mode=resize"
            )
        if mode not in ("resize", "native"):
            raise errors.invalid_argument(f"unknown mode {mode!r}; use resize or native")
        timings: dict[str, float] = {}

        def record(name: str, seconds: float) -> None:
            timings[name] = seconds
            STAGE_SECONDS.labels(name).observe(seconds)

        with self.batcher.arriving():  # batches forming meanwhile may wait for this request
            image, resized, decoded_at = await asyncio.to_thread(_prepare, request.image, mode, s, spec)
            record("decode", decoded_at - start)
            record("preprocess", time.monotonic() - decoded_at)
        if time.monotonic() >= deadline:
            raise errors.deadline_exceeded("the deadline expired before inference")
        mask, queued, inferred = await self.batcher.infer(resized, (image.height, image.width), deadline)
        record("queue", queued)
        record("inference", inferred)
        record("total", time.monotonic() - start)
        return SegmentResult(mask, image.width, image.height, spec, timings, image)

    async def close(self) -> None:
        """Finish queued work and stop the batcher and the pool's threads."""
        self.ready = False
        if self.batcher is not None:
            await self.batcher.close(self.settings.graceful_timeout_s)
        if self.pool is not None:
            await asyncio.to_thread(self.pool.close)
