"""One served version of one model: its pool, batcher, spec, description and in-flight requests.

A ``ModelRuntime`` knows nothing of transports or of other models. The repository builds one per load
(``resolve`` then ``ModelRuntime.open``, off the event loop), serves it while it is current, and
retires it with ``drain``: requests that already hold a lease on it finish there, then its batcher and
pool are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from contract.metadata import PREFIX, read_metadata
from server import errors, imaging, slide
from server.metrics import MODEL_INFO
from server.runtimes.base import build_pool
from server.runtimes.batcher import Batcher
from server.runtimes.onnxruntime import SessionPool
from server.schemas import Batching, ModelClass, ModelDescription, PrecisionCheck
from server.settings import Settings
from server.source import content_hash, resolve_model
from server.types import MODES, Mode

if TYPE_CHECKING:
    from server.runtimes.openvino import OpenVinoPool

log = logging.getLogger("segformer.runtime")


async def resolve(source: str, settings: Settings, cancel: threading.Event) -> Path:
    """The contract graph for ``source`` (exported or wrapped into the cache if needed), in a thread."""
    return await asyncio.to_thread(resolve_model, source, settings, cancel)


def graph_name(path: Path) -> str:
    """The ``segformer.name`` in a contract graph's metadata (without loading its weights)."""
    return read_metadata(path).get(PREFIX + "name", "")


class ModelRuntime:
    """A loaded, warmed-up model version behind its own batcher (build with ``await ModelRuntime.open``)."""

    def __init__(
        self,
        name: str,
        version: int,
        pool: SessionPool | OpenVinoPool,
        source_sha256: str,
        settings: Settings,
    ):
        self.name, self.version, self.pool, self.settings = name, version, pool, settings
        self.spec = pool.spec
        self.source_sha256 = source_sha256
        max_batch = settings.max_batch_size or (8 if pool.on_cuda else 1)  # CPU: batches buy nothing
        self.batcher = Batcher(
            pool,
            max_batch,
            settings.max_queue_delay_ms / 1000,
            settings.max_queue_size,
            fill_only_while_arriving=True,
            model=name,
        )
        self.palette = imaging.palette_array(self.spec.palette, self.spec.num_labels)
        self.default_mode: Mode = "resize" if self.spec.fixed_size is not None else settings.mode
        self._leases = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._info_labels: tuple[str, ...] = ()

    @classmethod
    async def open(cls, name: str, source: str, path: Path, version: int, settings: Settings) -> ModelRuntime:
        """Open the sessions of a resolved graph (``resolve``) and warm them up, all in threads."""
        digest = await asyncio.to_thread(content_hash, source) or await asyncio.to_thread(
            content_hash, str(path)
        )
        pool = await asyncio.to_thread(build_pool, path, settings)
        try:
            seconds = await asyncio.to_thread(pool.warm_up, settings.warmup_runs)
        except BaseException:
            await asyncio.to_thread(pool.close)
            raise
        log.info(
            "%s v%d: warm-up, %d run(s) per session in %.2fs", name, version, settings.warmup_runs, seconds
        )
        runtime = cls(name, version, pool, digest, settings)
        runtime.batcher.start()
        return runtime

    def publish(self) -> None:
        """Announce this version in the model-info metric (called when it becomes the serving one)."""
        d = self.describe("ready")
        self._info_labels = (
            self.name, str(self.version), d.graph_name, d.variant, str(d.num_labels), d.precision,
            ",".join(d.providers), d.mode, str(d.foreign), d.runtime, d.inference_precision,
        )  # fmt: skip
        MODEL_INFO.labels(*self._info_labels).set(1)

    def describe(self, state: str) -> ModelDescription:
        spec, s, pool = self.spec, self.settings, self.pool
        return ModelDescription(
            name=self.name,
            version=self.version,
            state=state,  # type: ignore[arg-type]
            graph_name=spec.name,
            variant=spec.variant,
            num_labels=spec.num_labels,
            classes=[
                ModelClass(id=i, label=spec.label(i), color=tuple(int(c) for c in self.palette[i]))
                for i in range(spec.num_labels)
            ],
            inference_size=spec.inference_size,
            mode=self.default_mode,
            modes=["resize"] if spec.fixed_size else list(MODES),
            native_max_side=s.native_max_side,
            mask_dtype=str(spec.mask_dtype),
            precision=spec.precision,
            runtime=pool.runtime,
            inference_precision=pool.precision,
            precision_check=None if pool.check is None else PrecisionCheck(**dataclasses.asdict(pool.check)),
            providers=pool.providers,
            batching=Batching(
                max_batch_size=self.batcher.max_batch_size,
                max_queue_delay_ms=s.max_queue_delay_ms,
                max_queue_size=s.max_queue_size,
                sessions=pool.size,
                intra_op_threads=pool.plan.lane_threads,
                solo_session_threads=pool.plan.solo_threads,
            ),
            source_sha256=self.source_sha256,
            foreign=spec.foreign,
        )

    @contextlib.contextmanager
    def lease(self) -> Iterator[ModelRuntime]:
        """Hold this version for one request: ``drain`` waits for every lease to end before closing."""
        self._leases += 1
        self._idle.clear()
        try:
            yield self
        finally:
            self._leases -= 1
            if self._leases == 0:
                self._idle.set()

    async def infer(self, image: np.ndarray, deadline: float) -> tuple[np.ndarray, float, float]:
        """The image's low-resolution logits through the batcher, with (queue, inference) seconds."""
        return await self.batcher.infer(image, deadline)

    def slide_plan(self, height: int, width: int) -> slide.SlidePlan:
        """The windows for an image (``--slide-crop``/``--slide-stride``); 413 beyond the window cap."""
        s = self.settings
        crop = (s.slide_crop, s.slide_crop) if s.slide_crop else self.spec.inference_size
        stride = tuple(s.slide_stride or max(1, c * 3 // 4) for c in crop)
        layout = slide.plan(height, width, crop, stride)  # type: ignore[arg-type]
        if layout.windows > s.slide_max_windows:
            raise errors.ServeError(
                413,
                "too_many_windows",
                f"a {width}x{height} image needs {layout.windows} windows of {crop[1]}x{crop[0]} "
                f"(stride {stride[1]}x{stride[0]}); the limit is {s.slide_max_windows} (--slide-max-windows)",
            )
        return layout

    def mask(self, logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The per-image stage (blocking: run it in a thread): logits → mask at ``size`` (``server.head``)."""
        return self.pool.head.run(logits, size)

    def check_mode(self, mode: str | None) -> Mode:
        chosen = mode or self.default_mode
        if chosen not in MODES:
            raise errors.invalid_argument(f"unknown mode {chosen!r}; use resize, native or slide")
        if chosen != "resize" and self.spec.fixed_size is not None:
            raise errors.invalid_argument(
                f"model {self.name!r} has a fixed input size {self.spec.fixed_size}; use mode=resize"
            )
        return chosen  # type: ignore[return-value]

    async def drain(self, timeout: float) -> None:
        """Wait (up to ``timeout``) for the requests holding a lease, then close the batcher and pool."""
        if self._info_labels:
            with contextlib.suppress(KeyError):
                MODEL_INFO.remove(*self._info_labels)
        end = time.monotonic() + timeout
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        await self.batcher.close(max(0.0, end - time.monotonic()))
        await asyncio.to_thread(self.pool.close)
        log.info("%s v%d: closed", self.name, self.version)
