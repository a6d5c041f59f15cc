"""One raw ONNX Runtime case: a session on the contract graph and the step the in-process loop times.

The session is built like a server would (``intra_op_num_threads`` = the thread budget, one inter-op
thread, all graph optimisations). Images are decoded and resized to the graph's inference size once,
up front, except in ``pipeline`` mode, which times every stage of the JPEG → PNG path.
"""

from __future__ import annotations

import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from server import imaging


def logits_graph(graph: Path) -> Path:
    """The graph cut at its ``logits`` output (no upsample, no argmax), in a temporary file."""
    import onnx
    import onnx.utils

    model = onnx.load(str(graph), load_external_data=False)
    if "logits" not in [o.name for o in model.graph.output]:
        raise SystemExit(f"{graph} has no logits output: export it with --outputs mask,logits")
    out = Path(tempfile.mkdtemp(prefix="bench-logits-")) / "logits.onnx"
    onnx.utils.extract_model(str(graph), str(out), ["image"], ["logits"])
    return out


def make_session(
    graph: Path, threads: int, providers: list[str] | None = None, profile_prefix: str | None = None
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # the optional `output_size` initializer-input warning is by design
    return ort.InferenceSession(str(graph), options, providers=providers or ["CPUExecutionProvider"])


def inference_size(session: ort.InferenceSession) -> tuple[int, int]:
    meta = session.get_modelmeta().custom_metadata_map
    height, width = json.loads(meta.get("segformer.inference_size", "[512, 512]"))
    return int(height), int(width)


class OrtCase:
    """``step(i)`` runs image ``i`` (mod the set) as a batch of ``batch`` identical images."""

    def __init__(self, graph: Path, threads: int, output: str, batch: int, images: list[bytes]) -> None:
        self.output, self.batch, self.jpegs = output, batch, images
        self.session = make_session(logits_graph(graph) if output == "logits" else graph, threads)
        self.size = inference_size(self.session)
        decoded = [Image.open(io.BytesIO(b)).convert("RGB") for b in images]
        self.originals = [np.array([im.height, im.width], dtype=np.int64) for im in decoded]
        self.inputs = [np.stack([imaging.resize_bilinear(im, self.size)] * batch) for im in decoded]
        self.stages = {"decode": 0.0, "resize": 0.0, "run": 0.0, "encode": 0.0}

    def step(self, i: int) -> None:
        k = i % len(self.jpegs)
        if self.output == "logits":
            self.session.run(["logits"], {"image": self.inputs[k]})
        elif self.output == "mask":
            self.session.run(["mask"], {"image": self.inputs[k], "output_size": self.originals[k]})
        else:
            self._pipeline(k)

    def _pipeline(self, k: int) -> None:
        """The server's own image code (``server.imaging``), without transport, batcher or threads."""
        t0 = time.perf_counter()
        image = imaging.open_image(self.jpegs[k], 1 << 40, 1 << 20)
        t1 = time.perf_counter()
        batch = np.stack([imaging.resize_bilinear(image, self.size)] * self.batch)
        t2 = time.perf_counter()
        size = np.array([image.height, image.width], dtype=np.int64)
        (masks,) = self.session.run(["mask"], {"image": batch, "output_size": size})
        t3 = time.perf_counter()
        for mask in masks:
            imaging.encode_mask_png(mask)
        t4 = time.perf_counter()
        for name, dt in zip(self.stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            self.stages[name] += dt
