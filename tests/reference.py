"""The reference pipeline every fidelity figure is measured against (test-only; needs transformers).

transformers' ``SegformerImageProcessorPil`` (PIL bilinear resize to the checkpoint's size, rescale 1/255,
mean/std), ``SegformerForSemanticSegmentation``, then ``post_process_semantic_segmentation`` with
``target_sizes=[(h, w)]`` (bilinear upsampling of the logits to the original size, argmax).

Shared by ``tests/export`` (ONNX graph vs reference) and ``tests/server`` (HTTP/gRPC vs reference)::

    ref = ReferencePipeline.load(real_weights_dir)
    expected = ref.mask(Image.open(path))               # int64 [H, W] at the original size
    resized = resize_like_processor(image, ref.size)    # uint8 [h, w, 3], what the ONNX graph is fed
    assert agreement(actual, expected) >= 0.999
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


def resize_like_processor(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Resize exactly like ``SegformerImageProcessorPil`` (PIL bilinear on uint8 RGB): uint8 ``[h, w, 3]``.

    ``size`` is ``(height, width)``.
    """
    rgb = image.convert("RGB")
    height, width = size
    return np.asarray(rgb.resize((width, height), resample=Image.Resampling.BILINEAR), dtype=np.uint8)


def agreement(actual: np.ndarray, expected: np.ndarray) -> float:
    """Fraction of pixels where two label masks agree (shapes must match)."""
    if actual.shape != expected.shape:
        raise ValueError(f"mask shapes differ: {actual.shape} vs {expected.shape}")
    return float(np.mean(actual.astype(np.int64) == expected.astype(np.int64)))


@dataclass(frozen=True)
class ReferencePipeline:
    """transformers' processor (PIL backend) and model for one Hugging Face folder."""

    processor: object
    model: object

    @staticmethod
    def load(weights_dir: Path) -> ReferencePipeline:
        return _load(str(Path(weights_dir).resolve()))

    @property
    def size(self) -> tuple[int, int]:
        """The processor's (height, width) inference size."""
        size = self.processor.size
        return int(size["height"]), int(size["width"])

    def logits(self, image: Image.Image) -> np.ndarray:
        """float32 ``[1, C, h/4, w/4]`` logits for the processor's resized, normalised image."""
        import torch

        inputs = self.processor(images=image.convert("RGB"), return_tensors="pt")
        with torch.inference_mode():
            return self.model(**inputs).logits.numpy()

    def mask(self, image: Image.Image) -> np.ndarray:
        """int64 ``[H, W]`` label mask at the image's original size (the reference semantics)."""
        import torch

        rgb = image.convert("RGB")
        inputs = self.processor(images=rgb, return_tensors="pt")
        with torch.inference_mode():
            outputs = self.model(**inputs)
            (mask,) = self.processor.post_process_semantic_segmentation(
                outputs, target_sizes=[(rgb.height, rgb.width)]
            )
        return mask.numpy().astype(np.int64)


@functools.lru_cache(maxsize=4)
def _load(weights_dir: str) -> ReferencePipeline:
    from transformers import SegformerForSemanticSegmentation, SegformerImageProcessorPil

    processor = SegformerImageProcessorPil.from_pretrained(weights_dir)
    model = SegformerForSemanticSegmentation.from_pretrained(weights_dir).eval()
    return ReferencePipeline(processor=processor, model=model)
