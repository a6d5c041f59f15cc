"""A pool of ONNX Runtime sessions lent to one batch at a time; ``run`` happens in a thread.

The sessions run the graph's batched stage (``contract.head.split``: image → low-resolution logits);
the per-image stage (upsampling + argmax at each image's own size, numpy) is ``pool.head``. So a
batch needs one input shape only, whatever the original sizes of its images.

No lock around ``session.run``: each session is used by one batch at a time (it is borrowed from the
pool), and ORT releases the GIL, so N sessions run N batches in parallel.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from contract.head import split
from contract.spec import ModelSpec
from server.head import MaskHead
from server.runtimes.base import PoolPlan
from server.runtimes.lanes import Lanes
from server.settings import Settings, usable_cores

log = logging.getLogger("segformer.pool")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def cuda_available() -> bool:
    """The ORT CUDA provider is installed (``onnxruntime-gpu``)."""
    return CUDA in ort.get_available_providers()


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


def plan_pool(settings: Settings, on_cuda: bool, cores: int) -> PoolPlan:
    """``--sessions N``: N lanes of ``cores / N`` threads; 0 (auto): 1 on CUDA, solo + 2 lanes on CPU.

    On a CPU the default adds a ``solo`` session with every core: a request that has the server to itself
    runs there at full-core latency, while under load the lanes (half the cores each) keep all cores busy
    without the synchronisation cost of one wide pool."""
    if settings.sessions:
        return PoolPlan(settings.sessions, settings.intra_op_threads or max(1, cores // settings.sessions))
    if on_cuda or cores < 2:
        return PoolPlan(1, settings.intra_op_threads or cores)
    return PoolPlan(2, settings.intra_op_threads or cores // 2, solo_threads=cores)


@functools.cache
def _register_shared_cpu_arena() -> None:
    """One CPU arena in ORT's process-wide environment (registered once per process).

    Sessions made with ``session.use_env_allocators=1`` allocate from it instead of each keeping its own
    arena at its own high-water mark: the solo session and the lanes never run at once, so they can
    share (B0, solo + 2 lanes, raw ORT: peak RSS 780 -> 450 MB, same speed).
    """
    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))  # ORT's default arena settings


def _session_options(threads: int, spinning: bool, shared_arena: bool) -> ort.SessionOptions:
    options = ort.SessionOptions()
    if shared_arena:
        _register_shared_cpu_arena()
        options.add_session_config_entry("session.use_env_allocators", "1")
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # memory patterns stay on (ORT's default): a run at a known shape takes its activations in one block
    # instead of one arena call per tensor, which the lanes' shared arena serialises (off, the server's
    # PNG path at 4 clients ran at 0.90-0.93x); a pattern is only offsets, and a large native shape's
    # block is given back by the shrinking run below (tests/server/test_memory.py)
    options.log_severity_level = 3  # the optional `output_size` initializer-input warning is by design
    if not spinning:  # several busy-waiting thread pools in one process fight over the cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    else:  # spin inside a run (fast hand-offs), not after it (the next run may be another session's)
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


#: a run with these options gives the arena's free regions back to the OS at its end (native mode: the
#: working set of a 1024x1024 input is ~13x that of 512x512, and would otherwise stay the arena's size)
_SHRINK = ort.RunOptions()
_SHRINK.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")


class SessionPool(Lanes[ort.InferenceSession]):
    """Sessions over one graph, lent to one batch at a time (see ``PoolPlan``, ``server.runtimes.lanes``)."""

    runtime = "onnxruntime"

    def __init__(self, model_path: Path, settings: Settings, cores: int | None = None) -> None:
        providers = choose_providers(settings)
        self.plan = plan = plan_pool(settings, providers[0] != CPU, cores or usable_cores())
        shared_arena = plan.lanes > 1 or plan.solo_threads > 0
        graph = onnx.load(str(model_path))
        meta = {p.key: p.value for p in graph.metadata_props}
        parts = split(graph)  # the batched stage (image -> logits) and the per-image head
        body = parts.body.SerializeToString()
        del graph

        def make(threads: int, spinning: bool) -> ort.InferenceSession:
            options = _session_options(threads, spinning, shared_arena)
            return ort.InferenceSession(body, options, providers=providers)

        lanes = [make(plan.lane_threads, spinning=plan.lanes == 1) for _ in range(plan.lanes)]
        solo = make(plan.solo_threads, spinning=True) if plan.solo_threads else None
        super().__init__(lanes, solo, thread_prefix="ort")
        first = self.sessions[0]
        self.providers: list[str] = first.get_providers()
        if settings.device == "cuda" and CUDA not in self.providers:
            raise RuntimeError(
                f"--device cuda: the CUDA provider failed to initialise (got {self.providers})"
            )
        if settings.device == "auto" and CUDA in ort.get_available_providers() and CUDA not in self.providers:
            log.warning("CUDA provider is installed but unusable here; falling back to CPU")
        inputs = {i.name: i for i in first.get_inputs()}
        self.spec = ModelSpec.from_graph(meta, list(inputs["image"].shape))
        self.head = MaskHead(
            parts.mode, parts.topk, self.spec.mask_dtype, concurrency=cores or usable_cores()
        )
        self.precision = self.spec.precision
        log.info(
            "loaded %s: providers %s, %d session(s) of %d intra-op thread(s)%s",
            model_path.name,
            self.providers,
            plan.lanes,
            plan.lane_threads,
            f" + a solo session of {plan.solo_threads} for lone requests" if self.solo is not None else "",
        )

    @property
    def on_cuda(self) -> bool:
        return CUDA in self.providers

    def _infer(self, session: ort.InferenceSession, images: np.ndarray) -> np.ndarray:
        """One batch. After a shape other than the inference size (native mode), the arena gives back the
        regions that shape grew: the logits are moved out of it, then a 32×32 run (a few ms) shrinks it
        (on the CPU; CUDA's arena grows by what is asked for: ``choose_providers``)."""
        (logits,) = session.run(None, {"image": images})
        if tuple(images.shape[1:3]) != tuple(self.spec.inference_size) and not self.on_cuda:
            logits = logits if logits.flags.owndata else logits.copy()
            tiny = np.ascontiguousarray(images[:, :32, :32])  # the batch's own size (a fixed batch stays)
            session.run(None, {"image": tiny}, _SHRINK)
        return logits
