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

    def mask_in_steps(self, image: Image.Image, classes_per_step: int = 8) -> np.ndarray:
        """``mask`` for large images, memory-bounded: the same logits, upsampled to the original size
        (``post_process_semantic_segmentation``'s bilinear ``interpolate``) a few classes at a time, the
        argmax over the running maximum (a later class wins only when strictly larger: torch's argmax
        keeps the first). A 12 Mpx photo holds 8 classes' planes (~390 MB), not 150 (7 GB)."""
        import torch

        rgb = image.convert("RGB")
        logits = torch.from_numpy(self.logits(rgb))
        size = (rgb.height, rgb.width)
        best = torch.full(size, -torch.inf)
        labels = torch.zeros(size, dtype=torch.int64)
        for start in range(0, logits.shape[1], classes_per_step):
            chunk = torch.nn.functional.interpolate(
                logits[:, start : start + classes_per_step], size=size, mode="bilinear", align_corners=False
            )[0]
            for offset, plane in enumerate(chunk):
                higher = plane > best
                best = torch.where(higher, plane, best)
                labels[higher] = start + offset
            del chunk
        return labels.numpy()


@functools.lru_cache(maxsize=4)
def _load(weights_dir: str) -> ReferencePipeline:
    from transformers import SegformerForSemanticSegmentation, SegformerImageProcessorPil

    processor = SegformerImageProcessorPil.from_pretrained(weights_dir)
    model = SegformerForSemanticSegmentation.from_pretrained(weights_dir).eval()
    return ReferencePipeline(processor=processor, model=model)
