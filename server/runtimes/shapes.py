"""Static-shape compilations of an OpenVINO model for the input shapes it serves most, beside the dynamic one.

OpenVINO's CPU plugin runs a model compiled for one fixed input shape about twice as fast as the same
model compiled with dynamic dimensions (B0, 512x512, 2 threads: bf16 23 vs 48 ms per image, fp32 42 vs
92 ms; a dynamic batch with a fixed height and width is as slow as fully dynamic; docs/openvino.md).
So the pool keeps both:

- the **dynamic** compilation serves any shape at once (no compile on the request path);
- a bounded LRU of **static** compilations, one per ``[1, H, W, 3]`` shape, serves those shapes from then on.
  The inference size at batch 1 (every ``resize``-mode request on a CPU) is compiled while the model
  loads. Any other shape is compiled in the background, in one thread, the ``hot_after``-th time it
  is asked for (``native``-mode sizes), so a size seen once never costs a
  compilation and a busy size stops paying the dynamic price after its second request.
- at most ``capacity`` static shapes (``--openvino-static-shapes``): each costs ~0.4-0.8 s of
  compilation and its own memory (~100 MB of activations and repacked weights for B0 at 512x512 with
  two infer requests); the least recently used one is dropped to make room (an infer request in use
  keeps its model alive until it returns). When the cache is full, a compilation that would drop one
  starts at most every ``EVICT_EVERY_S`` seconds, so more recurring shapes than places cannot keep the
  cores compiling (a shape waiting for its turn is served dynamically). 0 turns static compilations
  off. A static compilation that fails (at load or later) leaves that shape on the dynamic one.
- only image shapes of at most the inference size's pixels get one (``max_pixels``), so the static
  compilations hold at most ``capacity`` inference-size images' activations: over 800 native-mode sizes
  RSS ended 1.11x its value after the first 100 (1.27x when large sizes were compiled too;
  docs/benchmarks/OVSOAK.md). A larger native image runs on the dynamic compilation.

Static compilations are for one image (``[1, H, W, 3]``): a batch of N runs image by image on the
compilation of its image shape. So batch sizes never multiply the shapes (under a batching soak every
batch size from 1 to ``--max-batch-size`` would otherwise want its own compilation, and each of them N
times one image's activations: compilations dropped and made again, RSS growing), and a CPU loses
nothing by it: a larger batch buys no speed there (the batcher's CPU default is batches of one).

A compilation is a ``Chain``: the graph's parts in order (one part, or two for the ``mixed`` precision
plan), each compiled with its own precision hint and fed the previous parts' outputs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import openvino as ov

from server.recycle import RECYCLER

log = logging.getLogger("segformer.openvino")
Shape = tuple[int, ...]
#: distinct shapes counted before the counts start again (native mode sees many sizes once)
MAX_COUNTED = 1024
#: when the cache is full, seconds between two compilations that drop a shape
EVICT_EVERY_S = 30.0


class Chain:
    """``parts`` (model, precision hint) compiled for input ``shape`` (None: dynamic), ``requests`` infer
    requests each; ``run(lane, images)`` runs lane ``lane``'s requests part after part."""

    def __init__(
        self,
        parts: Sequence[tuple[ov.Model, str]],
        shape: Shape | None,
        compile_model: Callable[[ov.Model, str], ov.CompiledModel],
        requests: int,
    ) -> None:
        known: dict[str, list[int]] = {"image": list(shape or ())}
        self.steps: list[tuple[list[str], list[ov.InferRequest]]] = []
        for index, (model, hint) in enumerate(parts):
            if shape is not None:
                model = model.clone()
                model.reshape({i.get_any_name(): known[i.get_any_name()] for i in model.inputs})
                if index < len(parts) - 1:  # the next part's input shapes
                    known.update((o.get_any_name(), list(o.get_shape())) for o in model.outputs)
            compiled = compile_model(model, hint)
            names = [i.get_any_name() for i in compiled.inputs]
            self.steps.append((names, [compiled.create_infer_request() for _ in range(requests)]))

    def run(self, lane: int, images: np.ndarray) -> np.ndarray:
        """The last part's first output for a uint8 ``[N, H, W, 3]`` batch, copied out (the caller keeps
        it after the lane runs its next batch) into recycled memory: a fresh array of logits (9.8 MB at
        512x512) was ~2,400 page faults per inference."""
        result = self.infer(lane, images)
        logits = RECYCLER.empty(result.shape, result.dtype)
        np.copyto(logits, result)
        return logits

    def infer(self, lane: int, images: np.ndarray) -> np.ndarray:
        """The last part's first output in the lane's own memory: read it before its next ``infer``."""
        tensors: dict[str, np.ndarray] = {"image": np.ascontiguousarray(images)}
        for names, requests in self.steps:  # a part's outputs feed the next part at once, in place
            result = requests[lane].infer(
                {name: tensors[name] for name in names}, share_inputs=True, share_outputs=True
            )
            tensors.update((output.get_any_name(), value) for output, value in result.items())
        return result[0]


class ShapeCache:
    """``run(lane, images)`` on the static chain for the images' shape when compiled, else the dynamic one."""

    def __init__(
        self,
        build: Callable[[Shape | None], Chain],
        capacity: int,
        hot_after: int = 2,
        max_pixels: int | None = None,
    ) -> None:
        """``max_pixels``: larger image shapes stay on the dynamic compilation (each static one holds its
        shape's activations: ``capacity`` of them at most ``capacity`` inference-size images' worth)."""
        self._build, self.capacity, self.hot_after = build, capacity, hot_after
        self.max_pixels = max_pixels
        self.dynamic = build(None)
        self._static: OrderedDict[Shape, Chain] = OrderedDict()
        self._seen: Counter[Shape] = Counter()
        self._compiling: set[Shape] = set()
        self._failed: set[Shape] = set()
        self._last_eviction = -EVICT_EVERY_S
        self._lock = threading.Lock()  # guards the tables only; never held while a model compiles or runs
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="openvino-compile")

    @property
    def shapes(self) -> list[Shape]:
        """The static shapes, least recently used first."""
        with self._lock:
            return list(self._static)

    def try_add(self, shape: Shape) -> float:
        """``add``, logging a failure instead of raising (the shape stays dynamic); seconds."""
        try:
            return self.add(shape)
        except Exception:
            with self._lock:
                self._failed.add(shape)
            log.exception("openvino: static compilation for %s failed; it stays dynamic", shape)
            return 0.0

    def add(self, shape: Shape) -> float:
        """Compile ``shape`` now (blocking; at load); seconds. No-op without capacity or if present."""
        with self._lock:
            if self.capacity == 0 or shape in self._static:
                return 0.0
        start = time.perf_counter()
        chain = self._build(shape)
        with self._lock:
            self._static[shape] = chain
            while len(self._static) > self.capacity:
                dropped, _ = self._static.popitem(last=False)  # (``chain`` stamped _last_eviction)
                log.info("openvino: dropped the static compilation for %s (least recently used)", dropped)
        return time.perf_counter() - start

    def chain(self, shape: Shape) -> Chain:
        """The static chain for ``shape`` if compiled (marked recently used), else the dynamic one,
        counting the shape and starting its compilation once it is hot."""
        with self._lock:
            static = self._static.get(shape)
            if static is not None:
                self._static.move_to_end(shape)
                return static
            small = self.max_pixels is None or shape[1] * shape[2] <= self.max_pixels
            if self.capacity and small and shape not in self._compiling and shape not in self._failed:
                if len(self._seen) >= MAX_COUNTED:
                    self._seen.clear()
                self._seen[shape] += 1
                full = len(self._static) + len(self._compiling) >= self.capacity
                if self._seen[shape] >= self.hot_after and not (
                    full and time.monotonic() - self._last_eviction < EVICT_EVERY_S
                ):
                    self._compiling.add(shape)
                    if full:
                        self._last_eviction = time.monotonic()  # this compilation will drop one
                    self._executor.submit(self._compile_in_background, shape)
        return self.dynamic

    def run(self, lane: int, images: np.ndarray) -> np.ndarray:
        """Logits of a uint8 ``[N, H, W, 3]`` batch: image by image on the static chain of one image's
        shape once it is compiled, else the whole batch on the dynamic one (module doc: batch sizes)."""
        chain = self.chain((1, *images.shape[1:]))
        if chain is self.dynamic or len(images) == 1:
            return chain.run(lane, images)
        first = chain.infer(lane, images[:1])  # each image's logits copied once, into the batch's array
        batch = RECYCLER.empty((len(images), *first.shape[1:]), first.dtype)
        batch[0] = first[0]
        for index in range(1, len(images)):
            batch[index] = chain.infer(lane, images[index : index + 1])[0]
        return batch

    def _compile_in_background(self, shape: Shape) -> None:
        try:
            seconds = self.try_add(shape)
            if shape in self.shapes:
                log.info("openvino: compiled a static model for input %s in %.2fs", shape, seconds)
        finally:
            with self._lock:
                self._compiling.discard(shape)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
