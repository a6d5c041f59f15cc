"""A pool of ONNX Runtime sessions handed out through an asyncio queue; ``run`` happens in a thread.

No lock around ``session.run``: each session is used by one batch at a time (it is taken from the
queue), and ORT releases the GIL, so N sessions run N batches in parallel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from server.settings import Settings
from server.spec import ModelSpec

log = logging.getLogger("segformer.pool")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def choose_providers(settings: Settings) -> list[Any]:
    """CUDA (with options for dynamic shapes) when asked for or available, else CPU."""
    available = ort.get_available_providers()
    if settings.device == "cuda" and CUDA not in available:
        raise RuntimeError(
            f"--device cuda: onnxruntime {ort.__version__} has no CUDA provider (available: {available}); "
            "install onnxruntime-gpu (the `gpu` extra) instead of onnxruntime"
        )
    if settings.device == "cpu" or CUDA not in available:
        return [CPU]
    options: dict[str, Any] = {
        "device_id": settings.device_id,
        "cudnn_conv_algo_search": settings.cudnn_conv_algo_search,
        "arena_extend_strategy": "kSameAsRequested",
    }
    if settings.gpu_mem_limit_mib:
        options["gpu_mem_limit"] = settings.gpu_mem_limit_mib * 1024 * 1024
    return [(CUDA, options), CPU]


def _session_options(settings: Settings) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads_per_session()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # the optional `output_size` initializer-input warning is by design
    if settings.sessions > 1:
        # several busy-waiting thread pools in one process fight over the cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class SessionPool:
    """``settings.sessions`` identical sessions over one graph."""

    def __init__(self, model_path: Path, settings: Settings) -> None:
        providers = choose_providers(settings)
        self.sessions = [
            ort.InferenceSession(str(model_path), _session_options(settings), providers=providers)
            for _ in range(settings.sessions)
        ]
        first = self.sessions[0]
        self.providers: list[str] = first.get_providers()
        if settings.device == "cuda" and CUDA not in self.providers:
            raise RuntimeError(
                f"--device cuda: the CUDA provider failed to initialise (got {self.providers})"
            )
        if settings.device == "auto" and CUDA in ort.get_available_providers() and CUDA not in self.providers:
            log.warning("CUDA provider is installed but unusable here; falling back to CPU")
        meta = first.get_modelmeta().custom_metadata_map
        inputs = {i.name: i for i in first.get_inputs()}
        self.spec = ModelSpec.from_graph(meta, list(inputs["image"].shape))
        overridable = {i.name for i in first.get_overridable_initializers()}
        self.has_output_size = "output_size" in inputs or "output_size" in overridable
        self._free: asyncio.Queue[ort.InferenceSession] = asyncio.Queue()
        for session in self.sessions:
            self._free.put_nowait(session)
        self._executor = ThreadPoolExecutor(max_workers=len(self.sessions), thread_name_prefix="ort")
        log.info(
            "loaded %s: %d session(s), providers %s, %d intra-op thread(s) each",
            model_path.name,
            len(self.sessions),
            self.providers,
            settings.threads_per_session(),
        )

    @property
    def size(self) -> int:
        return len(self.sessions)

    def idle(self) -> int:
        return self._free.qsize()

    async def acquire(self) -> ort.InferenceSession:
        """Borrow a free session (waits for one); give it back with ``release``."""
        return await self._free.get()

    def release(self, session: ort.InferenceSession) -> None:
        self._free.put_nowait(session)

    def _feeds(self, images: np.ndarray, output_size: tuple[int, int]) -> dict[str, np.ndarray]:
        feeds = {"image": images}
        if self.has_output_size:
            feeds["output_size"] = np.asarray(output_size, dtype=np.int64)
        return feeds

    async def run(
        self, session: ort.InferenceSession, images: np.ndarray, output_size: tuple[int, int]
    ) -> np.ndarray:
        """``mask`` for a uint8 ``[N, H, W, 3]`` batch, computed in the pool's thread executor."""
        feeds = self._feeds(images, output_size)
        loop = asyncio.get_running_loop()
        (mask,) = await loop.run_in_executor(self._executor, session.run, ["mask"], feeds)
        return mask

    def warm_up(self, runs: int) -> float:
        """Run every session ``runs`` times at the inference size (blocking); returns seconds."""
        start = time.perf_counter()
        height, width = self.spec.inference_size
        image = np.full((1, height, width, 3), 128, dtype=np.uint8)
        for session in self.sessions:
            for _ in range(runs):
                session.run(["mask"], self._feeds(image, (height, width)))
        return time.perf_counter() - start

    def close(self) -> None:
        self._executor.shutdown(wait=True)
