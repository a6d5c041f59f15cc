"""The PyTriton baseline: our ONNX graph behind NVIDIA Triton's core and dynamic batcher.

Runs inside the separate PyTriton virtual environment (``bench/triton_env.py`` makes it), as a script:
``python bench/triton_model.py MODEL.onnx --http-port P --grpc-port Q --metrics-port R``. It imports
nothing from the project. The model ``segformer`` takes one JPEG per item (BYTES ``[1]``) and answers a
PNG mask (BYTES ``[1]``) doing the same work as our server: decode, PIL bilinear resize to the graph's
inference size, the graph with ``output_size`` = original size, PNG encode. Items of a dynamic batch
that share an original size run as one batch. SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import sys
import sysconfig

# PyTriton's python-backend stub links libpython; without this it may load Debian's copy and fail with
# "'_thread.RLock' object has no attribute '_recursion_count'". Must be set before Triton starts.
_LIBDIR = sysconfig.get_config_var("LIBDIR") or ""
if _LIBDIR and _LIBDIR not in os.environ.get("LD_LIBRARY_PATH", ""):
    os.environ["LD_LIBRARY_PATH"] = ":".join(p for p in (_LIBDIR, os.environ.get("LD_LIBRARY_PATH")) if p)

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from PIL import Image  # noqa: E402


def _session(path: str, threads: int) -> tuple[ort.InferenceSession, tuple[int, int]]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    height, width = json.loads(meta.get("segformer.inference_size", "[512, 512]"))
    return session, (int(height), int(width))


def _infer_factory(session: ort.InferenceSession, size: tuple[int, int]):
    def infer(image_bytes: np.ndarray) -> dict[str, np.ndarray]:
        images = [Image.open(io.BytesIO(bytes(item[0]))).convert("RGB") for item in image_bytes]
        arrays = [np.asarray(im.resize((size[1], size[0]), Image.Resampling.BILINEAR)) for im in images]
        out: list[bytes] = [b""] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault((im.height, im.width), []).append(i)
        for (height, width), members in groups.items():
            feed = {"image": np.stack([arrays[i] for i in members]), "output_size": np.array([height, width])}
            masks = session.run(["mask"], feed)[0]
            for i, mask in zip(members, masks, strict=True):
                buf = io.BytesIO()
                Image.fromarray(mask).save(buf, format="PNG", compress_level=1)
                out[i] = buf.getvalue()
        return {"mask_png": np.array([[b] for b in out], dtype=np.object_)}

    return infer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("onnx")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--delay-us", type=int, default=2000)
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--access-token", default=None, help="for PyTriton's restricted APIs (statistics)")
    args = parser.parse_args()

    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    session, size = _session(args.onnx, args.threads)
    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_address="127.0.0.1",
        metrics_port=args.metrics_port,
        allow_gpu_metrics=False,
        exit_timeout_secs=5,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    security = TritonSecurityConfig(access_token=args.access_token)  # None: PyTriton draws one
    with Triton(config=config, workspace=args.workspace, security_config=security) as triton:
        triton.bind(
            model_name="segformer",
            infer_func=batch(_infer_factory(session, size)),
            inputs=[Tensor(name="image_bytes", dtype=np.bytes_, shape=(1,))],
            outputs=[Tensor(name="mask_png", dtype=np.bytes_, shape=(1,))],
            config=ModelConfig(
                max_batch_size=args.max_batch,
                batcher=DynamicBatcher(max_queue_delay_microseconds=args.delay_us),
            ),
            strict=True,
        )
        print("READY", flush=True)
        triton.serve()


if __name__ == "__main__":
    main()
