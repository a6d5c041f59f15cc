"""The data plane: the only thing the transports (REST, gRPC, ...) call.

``segment`` routes a request to its model's serving version (``ModelRepository.get``), holds a lease on
it for the request's life (so a hot reload never closes it underneath), sheds the request before any
decoding when that model's queue is full, decodes and preprocesses (``resize`` like the reference
processor, or ``native``), waits in the model's batcher, and returns the mask at the original size.
Readiness is decided here and only here: transports ask ``is_ready`` or let ``segment`` raise.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable

import numpy as np
from PIL import Image

from server import errors, imaging, logs, slide, tracing
from server.memory import MemoryBudget, MiB, inference_cost
from server.metrics import IN_FLIGHT, SLIDE_WINDOWS, observe_stage
from server.repository import ModelRepository
from server.runtime import ModelRuntime
from server.schemas import ModelDescription, ModelStatus
from server.settings import Settings
from server.types import Mode, SegmentRequest, SegmentResult

log = logging.getLogger("segformer.dataplane")
#: what ``confidence``/``probability`` add to a working set per pixel (server/outputs/confidence.py)
PROBABILITY_BYTES_PER_PIXEL = 5
#: stages timed as metrics but not as spans of the request: its batch run is a span of its own (linked),
#: and ``total`` is the request span itself
UNTRACED_STAGES = frozenset({"inference", "total"})


def _attributes(runtime: ModelRuntime, mode: Mode, width: int, height: int) -> tracing.Attributes:
    return {
        "segformer.model": runtime.name,
        "segformer.model_version": runtime.version,
        "segformer.mode": mode,
        "segformer.image.width": width,
        "segformer.image.height": height,
    }


def _peek(request: SegmentRequest, s: Settings) -> Image.Image | np.ndarray:
    """The request's image with only its header read (``image`` bytes), or its ``pixels`` checked."""
    if request.pixels is None:
        return imaging.peek_image(request.image or b"", s.max_image_pixels, s.max_image_side)
    pixels = request.pixels
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise errors.invalid_argument(
            f"pixels must be uint8 [height, width, 3], got {pixels.dtype} {pixels.shape}"
        )
    height, width = pixels.shape[:2]
    if height == 0 or width == 0:
        raise errors.invalid_argument(f"pixels have an empty size {width}x{height}")
    if max(height, width) > s.max_image_side or height * width > s.max_image_pixels:
        raise errors.image_too_large(
            imaging.limits_detail(width, height, s.max_image_pixels, s.max_image_side)
        )
    return np.ascontiguousarray(pixels)


def _size(image: Image.Image | np.ndarray) -> tuple[int, int]:
    """(height, width)."""
    return (image.shape[0], image.shape[1]) if isinstance(image, np.ndarray) else (image.height, image.width)


def _draft(mode: Mode, s: Settings, runtime: ModelRuntime) -> tuple[int, int] | None:
    """The size a JPEG may be DCT-scaled down to (``--jpeg-draft``, resize mode only; native and slide
    use every pixel), or None: a full decode."""
    return runtime.spec.inference_size if mode == "resize" and s.jpeg_draft else None


def _prepare(
    peeked: Image.Image | np.ndarray, mode: Mode, s: Settings, runtime: ModelRuntime
) -> tuple[Image.Image | np.ndarray, np.ndarray, float]:
    """Decode and resize in one worker-thread hop: (image, model input, when decoding ended)."""
    size = runtime.spec.inference_size
    image = peeked if isinstance(peeked, np.ndarray) else imaging.load_rgb(peeked, _draft(mode, s, runtime))
    decoded_at = time.monotonic()
    height, width = _size(image)
    if mode == "slide":  # the windows are cut from the image at its own resolution
        return image, np.asarray(image, dtype=np.uint8), decoded_at
    if mode == "native":
        size = imaging.native_size(height, width, s.native_max_side)
    return image, imaging.resize_bilinear(image, size), decoded_at


def _native_excess(runtime: ModelRuntime, size: tuple[int, int]) -> int:
    """What an inference at ``size`` needs beyond one at the model's inference size (0 when smaller)."""
    labels = runtime.spec.num_labels
    return max(0, inference_cost(*size, labels) - inference_cost(*runtime.spec.inference_size, labels))


class DataPlane:
    """Routes requests to models; built before any model is loaded, so health checks answer at once."""

    def __init__(self, settings: Settings, repository: ModelRepository) -> None:
        self.settings = settings
        self.repository = repository
        self.budget = MemoryBudget(settings.memory_budget_mib * MiB)
        self.draining = False  # set on SIGTERM: readiness fails, accepted and new requests still run
        self.closing = False  # set when the listeners close (after the drain delay): streams end

    # --- models ---------------------------------------------------------------------------------------

    def describe(self, name: str | None = None) -> ModelDescription:
        """The serving version of ``name`` (None: the default model); 404 unknown, 503 not loaded yet."""
        status = self.repository.status(name)
        return self.repository.get(name).describe(status.state)

    def list_models(self) -> list[ModelStatus]:
        return self.repository.statuses()

    def status(self, name: str | None = None) -> ModelStatus:
        return self.repository.status(name)

    def is_ready(self, name: str | None = None) -> bool:
        """``name`` serves; None: every model serves and the server is not draining (``/readyz``)."""
        if name is None and self.draining:
            return False
        return self.repository.is_ready(name)

    async def wait_for_capacity(self, name: str | None, deadline: float | None) -> bool:
        """Wait until model ``name``'s queue would take a new request (False: not before ``deadline``).
        Back-pressure for streams; unknown or unloaded models return at once (``segment`` says why)."""
        try:
            batcher = self.repository.get(name).batcher
        except errors.ServeError:
            return True
        now = time.monotonic()
        deadline = now + self.settings.request_timeout_ms / 1000 if deadline is None else deadline
        return await batcher.wait_for_capacity(deadline - now)

    # --- inference ------------------------------------------------------------------------------------

    async def segment(self, request: SegmentRequest) -> SegmentResult:
        """Segment one image; raises ``ServeError`` (transports record requests and errors)."""
        IN_FLIGHT.labels(request.transport).inc()
        try:
            with self.repository.get(request.model).lease() as runtime:
                return await self._segment(runtime, request)
        finally:
            IN_FLIGHT.labels(request.transport).dec()

    async def _segment(self, runtime: ModelRuntime, request: SegmentRequest) -> SegmentResult:
        s = self.settings
        start = time.monotonic()
        deadline = request.deadline if request.deadline is not None else start + s.request_timeout_ms / 1000
        deadline = min(deadline, start + s.max_request_timeout_ms / 1000)  # no deadline is "never"
        if request.image is not None and len(request.image) > s.max_body_bytes:  # the REST body limit
            raise errors.body_too_large(s.max_body_bytes)
        mode = runtime.check_mode(request.mode)
        logs.MODEL.set(runtime.name)  # on the request's log lines (server/logs.py)
        if request.keep_logits and mode == "slide":
            raise errors.invalid_argument(
                "confidence and probability need mode resize or native: slide keeps no logits per image"
            )
        runtime.batcher.check_capacity(arriving=True)  # shed before decoding: a full queue costs no decode
        timings: dict[str, float] = {}

        def record(name: str, seconds: float, end: float | None = None) -> None:
            timings[name] = seconds
            observe_stage(runtime.name, name, seconds)
            if name not in UNTRACED_STAGES:
                tracing.stage(name, seconds, end)

        with runtime.batcher.arriving():  # batches forming meanwhile may wait for this request
            decoded = request.pixels is not None
            peeked = _peek(request, s) if decoded else await asyncio.to_thread(_peek, request, s)
            height, width = _size(peeked)
            tracing.annotate(_attributes(runtime, mode, width, height))
            draft = _draft(mode, s, runtime)
            pixels = _size(peeked) if isinstance(peeked, np.ndarray) else imaging.decoded_size(peeked, draft)
            cost = self.budget.cost(width, height, pixels, runtime.spec.mask_dtype.itemsize)
            if request.keep_logits:  # a full-size float32 probability plane and its 8-bit image
                cost += PROBABILITY_BYTES_PER_PIXEL * width * height
            layout = runtime.slide_plan(height, width) if mode == "slide" else None  # 413: too many windows
            if layout is not None:
                cost += layout.logits_bytes(runtime.spec.num_labels) + slide.BAND_BYTES
            elif mode == "native":  # a larger input than the inference size's (held since the warm-up)
                cost += _native_excess(runtime, imaging.native_size(height, width, s.native_max_side))
            # this image's working set is reserved before its pixels are decoded
            reserved = await self.budget.reserve(cost, deadline)
            try:
                image, resized, decoded_at = await asyncio.to_thread(_prepare, peeked, mode, s, runtime)
            except BaseException:
                self.budget.release(reserved)
                raise
            record("decode", decoded_at - start, decoded_at)
            record("preprocess", time.monotonic() - decoded_at)
            # only the overlay draws on the decoded pixels: other requests let them go before inference
            # (``peeked`` is the same Pillow image once decoded: a 12 Mpx photo's 48 MB)
            kept = image if request.keep_image else None
            del image, peeked
        try:
            if time.monotonic() >= deadline:
                raise errors.deadline_exceeded("the deadline expired before inference")
            logits = None
            if layout is not None:
                mask = await self._slide(runtime, resized, layout, deadline, record)
            else:
                logits, queued, inferred = await runtime.infer(resized, deadline)
                record("queue", queued, time.monotonic() - inferred)
                record("inference", inferred)
                mask_start = time.monotonic()
                mask = await asyncio.to_thread(runtime.mask, logits, (height, width))
                record("mask", time.monotonic() - mask_start)
        except BaseException:
            self.budget.release(reserved)
            raise
        record("total", time.monotonic() - start)
        spec, palette = runtime.spec, runtime.palette
        result = SegmentResult(mask, width, height, spec, runtime.name, palette, timings, kept)
        result.logits = logits if request.keep_logits else None
        weakref.finalize(result, self.budget.release, reserved)  # held until the transport has sent it
        return result

    async def _slide(
        self,
        runtime: ModelRuntime,
        pixels: np.ndarray,
        layout: slide.SlidePlan,
        deadline: float,
        record: Callable[[str, float], None],
    ) -> np.ndarray:
        """``mode=slide``: the windows through the model's batcher, combined in bands (server/slide.py)."""

        async def infer(window: np.ndarray) -> np.ndarray:
            with tracing.span("slide.window", {"segformer.window.shape": list(window.shape[:2])}):
                logits, _, _ = await runtime.infer(window, deadline)
            return logits

        inflight = max(2, min(16, self.settings.max_queue_size // 2))
        mask, timings = await slide.slide_mask(pixels, layout, infer, runtime.spec.mask_dtype, inflight)
        SLIDE_WINDOWS.labels(runtime.name).inc(layout.windows)
        for name, seconds in timings.items():
            record(name, seconds)
        return mask
