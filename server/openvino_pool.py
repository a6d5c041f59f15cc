"""An OpenVINO pool with the ``SessionPool`` interface, behind the same batcher, metrics and errors.

The lanes are the infer requests of one compiled model with one stream per lane (``openvino_plan``):
by default two streams of half the cores, no solo all-core stream. Unlike ONNX Runtime, a solo stream
bought nothing here and cost memory: measured on 2 shared cores, a lone request on a 2-thread stream
was as fast as on a 1-thread one (per-round ratio 1.01), the two-stream pool gave more images/s under
load than solo + lanes, and each compiled stream keeps its own activation memory (~170 MB for B0 at
512x512: in-process peak RSS 613 vs 782 MB). ``--sessions 1`` is the all-core, latency-first choice.
``InferRequest.infer`` releases the GIL, so lanes run side by side in the pool's threads.

The contract graph's ``output_size`` is an initializer-input, which OpenVINO freezes into a constant at
read time; the constant is swapped for a real ``[2]`` int64 parameter, so the output size stays per batch
with dynamic shapes and no recompilation.

bf16 and fp16 are checked when the pool loads: masks on a few smooth synthetic images at the
verification shapes are compared with an fp32 compilation; below ``--bf16-min-agreement`` the pool
recompiles in fp32 and logs a warning (``fallback`` in ``/v1/model``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino.opset13 as opset
from PIL import Image

from contract.spec import ModelSpec
from server.cpufeatures import Precision
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


def read_graph(core: ov.Core, path: Path) -> ov.Model:
    """The graph with ``output_size`` as a real input (OpenVINO freezes the initializer-input)."""
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


def graph_metadata(model: ov.Model) -> dict[str, str]:
    """The ONNX ``metadata_props`` (OpenVINO keeps them under ``rt_info["framework"]``)."""
    if not model.has_rt_info(["framework"]):
        return {}
    framework = model.get_rt_info(["framework"]).astype(dict)
    return {str(key): value.astype(str) for key, value in framework.items()}


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
    """``--sessions N``: N streams of ``cores / N`` threads (or ``--intra-op-threads``); 0: 2 streams."""
    streams = settings.sessions or min(2, cores)
    return PoolPlan(streams, settings.intra_op_threads or max(1, cores // streams))


class OpenVinoPool:
    """Infer requests over one graph, lent to one batch at a time (same interface as ``SessionPool``)."""

    runtime = "openvino"

    def __init__(
        self, model_path: Path, settings: Settings, precision: Precision, cores: int | None = None
    ) -> None:
        self.core = ov.Core()
        self._model = read_graph(self.core, model_path)
        self.plan = plan = openvino_plan(settings, cores or usable_cores())
        self.spec = ModelSpec.from_graph(graph_metadata(self._model), self._image_shape())
        self.has_output_size = any("output_size" in port.get_names() for port in self._model.inputs)
        self.check = self._check_precision(precision, settings.bf16_min_agreement)
        self.precision: Precision = "fp32" if self.check.fallback else precision
        lanes_model = self._compile(self.precision, plan.lanes, plan.lanes * plan.lane_threads)
        self.lanes = [lanes_model.create_infer_request() for _ in range(plan.lanes)]
        self._prime()
        self.sessions = list(self.lanes)
        self.providers = [f"OpenVINO:CPU:{HINTS[self.precision]}"]
        self._free_lanes = list(self.lanes)
        self._released = asyncio.Event()
        self.idle_since = time.monotonic()
        self._executor = ThreadPoolExecutor(max_workers=len(self.sessions), thread_name_prefix="openvino")
        log.info(
            "loaded %s: OpenVINO %s CPU %s, %d stream(s) of %d thread(s)",
            model_path.name, ov.get_version(), self.precision, plan.lanes, plan.lane_threads,
        )  # fmt: skip

    def _prime(self) -> None:
        """One small inference before any two threads call ``infer``: the first concurrent calls into the
        Python bindings can deadlock (seen with 2026.4: one thread inside a static initialiser waits for
        the GIL, the other holds the GIL and waits for that initialiser)."""
        height, width = self.spec.fixed_size or (64, 64)
        self._infer(self.lanes[0], self._feeds(np.zeros((1, height, width, 3), np.uint8), (height, width)))

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
            feeds = self._feeds(image, (image.shape[1], image.shape[2]))
            masks = [model.create_infer_request().infer(feeds)["mask"] for model in (reduced, full)]
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
    def size(self) -> int:
        return len(self.lanes)

    @property
    def on_cuda(self) -> bool:
        return False

    @property
    def busy(self) -> int:
        return len(self.lanes) - len(self._free_lanes)

    async def acquire(self, alone: bool = False) -> ov.InferRequest:
        """Borrow an infer request (``alone`` is accepted for ``SessionPool``'s interface: no solo here)."""
        while True:
            if self._free_lanes:
                return self._free_lanes.pop()
            self._released.clear()
            await self._released.wait()

    def release(self, request: ov.InferRequest) -> None:
        self._free_lanes.append(request)
        if self.busy == 0:
            self.idle_since = time.monotonic()
        self._released.set()

    def kind(self, request: ov.InferRequest) -> str:
        return "lane"

    def _feeds(self, images: np.ndarray, output_size: tuple[int, int]) -> dict[str, np.ndarray]:
        feeds = {"image": np.ascontiguousarray(images)}
        if self.has_output_size:
            feeds["output_size"] = np.asarray(output_size, dtype=np.int64)
        return feeds

    @staticmethod
    def _infer(request: ov.InferRequest, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return request.infer(feeds, share_inputs=True)["mask"]

    async def run(
        self, request: ov.InferRequest, images: np.ndarray, output_size: tuple[int, int]
    ) -> np.ndarray:
        """``mask`` for a uint8 ``[N, H, W, 3]`` batch, computed in the pool's thread executor."""
        feeds = self._feeds(images, output_size)
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._infer, request, feeds)

    def warm_up(self, runs: int) -> float:
        start = time.perf_counter()
        height, width = self.spec.inference_size
        image = np.full((1, height, width, 3), 128, dtype=np.uint8)
        for request in self.sessions:
            for _ in range(runs):
                self._infer(request, self._feeds(image, (height, width)))
        return time.perf_counter() - start

    def close(self) -> None:
        self._executor.shutdown(wait=True)
