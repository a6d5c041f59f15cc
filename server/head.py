"""The per-image stage: bilinear upsampling + argmax of one image's logits at its own size, in tiles.

The batched stage (``SessionPool``) stops at the low-resolution logits; this runs the head graph of
``contract.head`` (the exported graph's own upsampling nodes) for bands of output rows, each at most
``TILE_PIXELS`` output pixels, into one preallocated mask. So the full-resolution work of an image of
any size holds a bounded amount of memory (a band's candidates), never C or 4K full-size planes.
ORT sessions are safe to run from several threads at once: requests run their heads side by side.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import onnx
import onnxruntime as ort

from contract.head import HEAD_LOGITS, HEAD_OUT_HW, HEAD_ROWS

#: output pixels per tile: top-K (K=3) holds 12 float planes per tile, ~50 MB at 1 Mpx (tried 4 Mpx:
#: ~20 % less head time on a 2 Mpx image, but a 36 Mpx PNG peaked at 1.34 GB and three at once at 2.9 GB)
TILE_PIXELS = 1 << 20


def tile_rows(height: int, width: int, tile_pixels: int = TILE_PIXELS) -> list[tuple[int, int]]:
    """Bands (start, end) of output rows covering ``height``, each at most ``tile_pixels`` pixels."""
    rows = max(1, min(height, tile_pixels // max(1, width)))
    count = math.ceil(height / rows)
    rows = math.ceil(height / count)  # even bands
    return [(start, min(height, start + rows)) for start in range(0, height, rows)]


def _session(graph: onnx.ModelProto, providers: list[object], threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # every core for a lone request's head (its latency); heads of concurrent requests share the cores,
    # so the threads do not spin while waiting
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # its own arena: without one every tile's buffers are fresh mappings (page faults): 2.4x the time
    # (B0, 683x512: 51 vs 28 ms). Tiles are at most TILE_PIXELS and at most ``concurrency`` run at once,
    # so the arena's high-water is bounded; ``warm`` takes it there at load, not on a user's request.
    options.enable_cpu_mem_arena = True
    options.log_severity_level = 3
    return ort.InferenceSession(graph.SerializeToString(), options, providers=providers)


class MaskHead:
    """A session over the head graph; at most ``concurrency`` tiles run at once (bounded memory: a 1 Mpx
    top-K tile holds ~350 MB of intermediates; one at a time, on every core, is as fast on a CPU)."""

    def __init__(
        self,
        head: onnx.ModelProto,
        providers: list[object],
        mask_dtype: np.dtype,
        threads: int = 1,
        concurrency: int = 1,
    ) -> None:
        self.session = _session(head, providers, threads)
        self.mask_dtype = mask_dtype
        self.concurrency = max(1, concurrency)
        self._slots = threading.BoundedSemaphore(self.concurrency)

    def warm(self, logits: np.ndarray) -> None:
        """Full-size tiles, ``concurrency`` at once: the arena at its working size from the start."""
        side = math.isqrt(TILE_PIXELS)
        threads = [
            threading.Thread(target=self.run, args=(logits, (side, side))) for _ in range(self.concurrency)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def run(self, logits: np.ndarray, size: tuple[int, int], tile_pixels: int = TILE_PIXELS) -> np.ndarray:
        """The ``[H, W]`` mask of one image's ``[C, h, w]`` logits at ``size`` = (H, W) (blocking)."""
        height, width = size
        mask = np.empty((height, width), self.mask_dtype)
        feeds = {HEAD_LOGITS: np.ascontiguousarray(logits[None], dtype=np.float32)}
        feeds[HEAD_OUT_HW] = np.asarray(size, dtype=np.int64)
        for start, end in tile_rows(height, width, tile_pixels):
            feeds[HEAD_ROWS] = np.asarray((start, end), dtype=np.int64)
            with self._slots:
                (band,) = self.session.run(["mask"], feeds)
            mask[start:end] = band[0]
        return mask
