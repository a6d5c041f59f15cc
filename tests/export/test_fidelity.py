"""On real photos, the ONNX mask agrees with transformers' reference pipeline (tests/reference.py).

The graph is fed what the server feeds it: the photo resized to 512x512 with PIL bilinear exactly like
``SegformerImageProcessorPil``, and ``output_size`` = the original size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.export.conftest import session
from tests.reference import ReferencePipeline, agreement, resize_like_processor

MIN_AGREEMENT = 0.999


def test_real_photos_match_the_reference_pipeline(
    real_b0_onnx: Path, real_weights_dir: Path, real_photos: list[Path]
) -> None:
    reference = ReferencePipeline.load(real_weights_dir)
    sess = session(real_b0_onnx)
    scores = {}
    for path in real_photos:
        photo = Image.open(path)
        resized = resize_like_processor(photo, reference.size)
        feeds = {"image": resized[None], "output_size": np.array([photo.height, photo.width], dtype=np.int64)}
        (mask,) = sess.run(["mask"], feeds)
        expected = reference.mask(photo)
        assert mask.shape == (1, photo.height, photo.width)
        scores[path.name] = agreement(mask[0], expected)
    print("agreement with the transformers reference:", {k: f"{100 * v:.4f} %" for k, v in scores.items()})
    assert min(scores.values()) >= MIN_AGREEMENT, scores


def test_topk_upsampling_agrees_with_full(
    real_b0_onnx: Path, real_weights_dir: Path, real_photos: list[Path], tmp_path: Path
) -> None:
    """The default ``--upsample topk`` against ``full`` (every class resized), at the photos' size and 2K."""
    from contract.metadata import decode_metadata, read_metadata
    from export.api import export_onnx

    full = session(export_onnx(real_weights_dir, tmp_path / "full.onnx", upsample="full", verify_graph=False))
    topk = session(real_b0_onnx)
    assert decode_metadata(read_metadata(real_b0_onnx))["outputs"] == ["mask"]
    scores = []
    for i, path in enumerate(real_photos):
        photo = Image.open(path)
        sizes = [(photo.height, photo.width)] + ([(1024, 2048)] if i == 0 else [])
        for size in sizes:
            feeds = {"image": resize_like_processor(photo, (512, 512))[None], "output_size": np.array(size)}
            scores.append(agreement(topk.run(["mask"], feeds)[0], full.run(["mask"], feeds)[0]))
    print("topk vs full agreement:", [f"{100 * s:.4f} %" for s in scores])
    assert min(scores) >= 0.9999
