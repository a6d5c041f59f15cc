"""``confidence`` and ``probability``: the model's softmax, computed only for requests that ask.

Definition (``docs/outputs.md``): the softmax over classes of the model's logits on its own output grid
(a quarter of the inference size: 128x128 for a 512x512 model), then, per pixel of the original image,
bilinear interpolation of that probability plane to the original size with torch's
``align_corners=False`` weights (the mask's own, ``server.head.axis_weights``; OpenCV's ``INTER_LINEAR``
computes the same in float32, to 1e-5), times 255, rounded, as an 8-bit PNG.
``confidence`` interpolates the largest probability of each grid point; ``probability`` the chosen
classes' own. Because the probabilities (not the logits) are interpolated, a pixel on a class boundary
gets a blend of both sides' confidences rather than the dip a softmax of interpolated logits would show.

The mask path never comes here: the data plane keeps a result's low-resolution logits only when its
request asked for one of these formats (``SegmentRequest.keep_logits``).
"""

from __future__ import annotations

import base64
import json

import cv2
import numpy as np

from server import errors, imaging
from server.outputs.base import Encoded, Options
from server.outputs.masks import fields, filtered
from server.types import SegmentResult

PROBABILITY_TYPE = "application/vnd.segformer.probability+json"


def _logits(result: SegmentResult) -> np.ndarray:
    if result.logits is None:  # the transport did not ask the data plane to keep them (a server bug)
        raise ValueError("this result has no logits: the request did not ask for probabilities")
    return np.asarray(result.logits, np.float32)


def _softmax_parts(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[h, w]`` float32 largest logit and ``sum(exp(l - largest))`` (one class at a time: no
    ``[C, h, w]`` temporary)."""
    top = logits.max(axis=0)
    total = np.zeros(top.shape, np.float32)
    for plane in logits:
        total += np.exp(plane - top)
    return top, total


def max_probability(logits: np.ndarray) -> np.ndarray:
    """``[h, w]`` float32: each grid point's largest softmax probability."""
    _, total = _softmax_parts(logits)
    return np.float32(1) / total


def class_probabilities(logits: np.ndarray, class_ids: tuple[int, ...]) -> list[np.ndarray]:
    """``[h, w]`` float32 softmax probability of each class in ``class_ids``."""
    top, total = _softmax_parts(logits)
    return [np.exp(logits[c] - top) / total for c in class_ids]


def to_image(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A ``[h, w]`` probability plane as uint8 ``[H, W]`` at ``size`` = (H, W): bilinear, x255, rounded."""
    height, width = size
    up = cv2.resize(plane, (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.convertScaleAbs(up, alpha=255.0)  # rounds and saturates to 0..255


def confidence_mask(result: SegmentResult, options: Options) -> np.ndarray:
    """uint8 ``[H, W]`` confidence; 0 where the class filter left background."""
    out = to_image(max_probability(_logits(result)), (result.height, result.width))
    if options.classes is not None:
        out[filtered(result, options) != result.mask] = 0
    return out


def confidence(result: SegmentResult, options: Options) -> Encoded:
    body = imaging.encode_mask_png(confidence_mask(result, options))
    return Encoded(body, "image/png", fields(result, options))


#: the most classes one ``probability`` request maps (each is a full-size plane, its PNG and its base64)
MAX_PROBABILITY_CLASSES = 8


def probability(result: SegmentResult, options: Options) -> Encoded:
    """JSON: per chosen class (``classes`` is required) an 8-bit probability PNG at the original size."""
    chosen = options.selected(result.spec)
    if not chosen:
        raise errors.invalid_argument("format probability needs classes=... (the ids or labels to map)")
    size, maps = (result.height, result.width), []
    for class_id, plane in zip(chosen, class_probabilities(_logits(result), chosen), strict=True):
        png = imaging.encode_mask_png(to_image(plane, size))
        maps.append(
            {
                "id": class_id,
                "label": result.spec.label(class_id),
                "png_base64": base64.b64encode(png).decode(),
            }
        )
    body = {"width": result.width, "height": result.height, "model": result.model, "classes": maps}
    return Encoded(json.dumps(body).encode(), PROBABILITY_TYPE, fields(result, options))
