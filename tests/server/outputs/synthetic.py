"""Small ``SegmentResult``s from made-up logits, for the format unit tests (no model, no server)."""

from __future__ import annotations

import cv2
import numpy as np

from contract.spec import ModelSpec
from server.types import SegmentResult

LABELS = {0: "wall", 1: "sky", 2: "road", 3: "car", 4: "tree"}


def spec(num_labels: int = len(LABELS), dtype: str = "uint8") -> ModelSpec:
    return ModelSpec(
        name="synthetic", variant="b0", num_labels=num_labels, id2label=dict(LABELS),
        palette=[(40 * i % 256, 90 * i % 256, 10 * i % 256) for i in range(num_labels)],
        inference_size=(64, 64), mask_dtype=np.dtype(dtype), precision="fp32", source="", source_sha256="",
        wrapped_from=None, fixed_batch=None, fixed_size=None,
    )  # fmt: skip


def result(height: int = 70, width: int = 90, seed: int = 0) -> SegmentResult:
    """Random smooth logits ``[5, 16, 16]`` and the mask their bilinear upsampling's argmax gives."""
    logits = np.random.default_rng(seed).normal(size=(len(LABELS), 16, 16)).astype(np.float32) * 3
    up = np.stack([cv2.resize(plane, (width, height), interpolation=cv2.INTER_LINEAR) for plane in logits])
    mask = up.argmax(axis=0).astype(np.uint8)
    model = spec()
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    palette = np.asarray(model.palette, np.uint8)
    return SegmentResult(mask, width, height, model, "synthetic", palette, {}, image, logits)


def with_mask(mask: np.ndarray) -> SegmentResult:
    """A result of a given mask (no logits, no image), its spec sized to the mask's dtype."""
    model = spec(max(len(LABELS), int(mask.max()) + 1), mask.dtype.name)
    palette = np.asarray(model.palette, np.uint8)
    return SegmentResult(mask, mask.shape[1], mask.shape[0], model, "synthetic", palette, {})
