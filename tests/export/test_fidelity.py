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
