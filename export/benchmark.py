"""``python -m export.benchmark SOURCE [PHOTO ...]``: full vs top-K upsampling, time and agreement.

For each output size, times (ONNX Runtime, CPU, best of ``--repeat``) the mask computation from the
512x512 logits alone and the whole graph (network + mask), and reports each top-K mask's pixel agreement
with the ``full`` mask and with PyTorch (``F.interpolate`` + argmax). The numbers in docs/export.md.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from contract.graph import wrap_network
from contract.upsample import upsample_argmax
from export.trace import export_network
from export.verify import synthetic_images, torch_reference
from model.loading import load_segformer


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def mask_only_graph(classes: int, mode: str, topk: int) -> onnx.ModelProto:
    """logits float [N, classes, h, w] + out_hw int64 [2] -> labels [N, H, W]."""
    consts: dict[str, np.ndarray] = {}
    nodes = upsample_argmax(
        "logits", "out_hw", "labels", mode=mode, consts=consts, num_labels=classes, topk=topk
    )
    label_type = TensorProto.INT64 if mode == "full" else TensorProto.INT32
    graph = helper.make_graph(
        nodes,
        "mask_only",
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", classes, "h", "w"]),
            helper.make_tensor_value_info("out_hw", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("labels", label_type, ["n", "H", "W"])],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def best_time(session: ort.InferenceSession, feeds: dict[str, np.ndarray], repeat: int) -> float:
    session.run(None, feeds)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.benchmark", description=__doc__)
    parser.add_argument("source", help="anything segformer-export accepts")
    parser.add_argument("photos", nargs="*", help="photos (default: one synthetic image)")
    parser.add_argument("--topk", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--sizes", nargs="+", default=["480x640", "1024x2048"])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    net, info = load_segformer(args.source)
    h, w = info.image_size
    if args.photos:
        images = [
            np.asarray(Image.open(p).convert("RGB").resize((w, h), Image.Resampling.BILINEAR))
            for p in args.photos
        ]
    else:
        images = list(synthetic_images(1, h, w))
    network = export_network(net.fuse_for_inference(), 17)
    modes = [("full", 0)] + [("topk", k) for k in args.topk]
    whole = {
        (mode, k): _session(
            wrap_network(
                network, image_mean=info.image_mean, image_std=info.image_std, upsample=mode, topk=k or 1
            )
        )
        for mode, k in modes
    }
    post = {(mode, k): _session(mask_only_graph(info.num_labels, mode, k or 1)) for mode, k in modes}
    print(
        f"{args.source}: {len(images)} image(s) at {h}x{w}, "
        f"ONNX Runtime {ort.__version__} CPU, best of {args.repeat}"
    )
    for size in args.sizes:
        out_hw = tuple(int(v) for v in size.split("x"))
        results: dict[tuple[str, int], list[tuple[float, float, float, float]]] = {m: [] for m in modes}
        for image in images:
            logits, ref = torch_reference(net, image[None], info.image_mean, info.image_std, out_hw)
            out = np.asarray(out_hw, dtype=np.int64)
            full = post[("full", 0)].run(None, {"logits": logits, "out_hw": out})[0]
            for m in modes:
                labels = post[m].run(None, {"logits": logits, "out_hw": out})[0]
                t_post = best_time(post[m], {"logits": logits, "out_hw": out}, args.repeat)
                t_all = best_time(whole[m], {"image": image[None], "output_size": out}, args.repeat)
                results[m].append((t_post, t_all, np.mean(labels == full), np.mean(labels == ref)))
        for (mode, k), rows in results.items():
            t_post, t_all, vs_full, vs_torch = (float(np.mean(col)) for col in zip(*rows, strict=True))
            name = mode if mode == "full" else f"topk K={k}"
            print(
                f"  {h}x{w} -> {size:>9} {name:>10}: mask {1000 * t_post:7.1f} ms, whole graph "
                f"{1000 * t_all:7.1f} ms, agreement with full {100 * vs_full:.4f} %, "
                f"with torch {100 * vs_torch:.4f} %"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
