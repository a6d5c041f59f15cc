"""What a client does with each format: decode PNGs, decode COCO RLE, rasterise GeoJSON polygons."""

from __future__ import annotations

import base64
import io
import warnings
from typing import Any

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as coco


def png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def b64_png(text: str) -> np.ndarray:
    return png_pixels(base64.b64decode(text))


def rle_decode(item: dict[str, Any]) -> np.ndarray:
    """A COCO RLE object (compressed string counts) as a bool mask, by pycocotools."""
    with warnings.catch_warnings():  # pycocotools' Cython __array__ predates numpy 2's copy keyword
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        return coco.decode({"size": item["size"], "counts": item["counts"].encode()}).astype(bool)


def fill(geometry: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise a GeoJSON (Multi)Polygon in pixel-centre coordinates (cv2.fillPoly, boundary included)."""
    polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    canvas = np.zeros(shape, np.uint8)
    for rings in polygons:
        cv2.fillPoly(canvas, [np.asarray(ring, np.int32) for ring in rings], 1)
    return canvas.astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))
