"""``rle`` (COCO run-length encoding, pycocotools) and ``polygons`` (GeoJSON, OpenCV contours).

RLE: the mask's runs are found once for all classes (column-major, COCO's order: one pass of numpy over
the mask), then pycocotools compresses each class's counts into COCO's string form. So the cost is one
scan of the mask plus a few microseconds per run, not one binary mask and one encode per class.

Polygons: ``cv2.findContours`` (``RETR_CCOMP``: outer boundaries and their holes) on each class's binary
mask, ``cv2.approxPolyDP`` for ``tolerance`` > 0. Coordinates are pixel centres (x = column, y = row)
of the class's boundary pixels, so ``cv2.fillPoly`` of a polygon's rings (boundaries included) gives
that class's pixels back; a one-pixel-wide part yields a degenerate (zero-area) ring, kept.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
from pycocotools import mask as coco

from server.outputs.base import Encoded, Options, kept
from server.outputs.masks import fields, filtered
from server.types import SegmentResult

RLE_TYPE = "application/vnd.coco-rle+json"
GEOJSON_TYPE = "application/geo+json"


def class_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mask's runs in column-major order: (value, start, end) arrays."""
    flat = np.asfortranarray(mask).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([np.zeros(1, np.int64), change])
    ends = np.concatenate([change, np.full(1, flat.size, np.int64)])
    return flat[starts], starts, ends


def coco_counts(starts: np.ndarray, ends: np.ndarray, total: int) -> list[int]:
    """COCO's uncompressed counts (zeros, ones, zeros, ...) of the runs start..end-1 in ``total`` pixels."""
    counts = np.empty(2 * len(starts) + 1, np.int64)
    counts[0:-1:2] = starts - np.concatenate([np.zeros(1, np.int64), ends[:-1]])
    counts[1::2] = ends - starts
    counts[-1] = total - (ends[-1] if len(ends) else 0)
    return counts.tolist()


def rle(result: SegmentResult, options: Options) -> Encoded:
    """JSON ``{"width", "height", "model", "classes": [{"id", "label", "size", "counts"}]}``, a class
    per class present."""
    mask = filtered(result, options)
    height, width = mask.shape
    values, starts, ends = class_runs(mask)
    items = []
    for class_id in kept(result, options):
        chosen = values == class_id
        counts = coco_counts(starts[chosen], ends[chosen], height * width)
        encoded = coco.frPyObjects({"size": [height, width], "counts": counts}, height, width)
        label = result.spec.label(class_id)
        items.append(
            {"id": class_id, "label": label, "size": [height, width], "counts": encoded["counts"].decode()}
        )
    body = {"width": width, "height": height, "model": result.model, "classes": items}
    return Encoded(json.dumps(body).encode(), RLE_TYPE, fields(result, options))


def _ring(contour: np.ndarray, tolerance: float) -> list[list[int]]:
    points = cv2.approxPolyDP(contour, tolerance, True) if tolerance > 0 else contour
    ring = points.reshape(-1, 2).tolist()
    ring.append(ring[0])  # GeoJSON rings are closed
    while len(ring) < 4:  # a one- or two-pixel part: degenerate, but a valid ring length
        ring.append(ring[0])
    return ring


def class_polygons(binary: np.ndarray, tolerance: float, min_area: float) -> list[list[list[list[int]]]]:
    """Polygons (outer ring, then holes) of a uint8 0/1 mask; rings below ``min_area`` pixels dropped.
    Traced inside the class's bounding box only (most classes cover a small part of a photo)."""
    x, y, w, h = cv2.boundingRect(binary)
    box = np.ascontiguousarray(binary[y : y + h, x : x + w])
    contours, hierarchy = cv2.findContours(box, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE, offset=(x, y))
    if hierarchy is None:
        return []
    links = hierarchy[0]  # per contour: next, previous, first child, parent
    polygons = []
    for index, (_, _, child, parent) in enumerate(links):
        if parent != -1 or cv2.contourArea(contours[index]) < min_area:
            continue
        rings = [_ring(contours[index], tolerance)]
        while child != -1:
            if cv2.contourArea(contours[child]) >= min_area:
                rings.append(_ring(contours[child], tolerance))
            child = links[child][0]
        polygons.append(rings)
    return polygons


def polygons(result: SegmentResult, options: Options) -> Encoded:
    """GeoJSON FeatureCollection: one Feature per class present, a (Multi)Polygon in pixel coordinates."""
    mask = filtered(result, options)
    features = []
    for class_id in kept(result, options):
        found = class_polygons((mask == class_id).view(np.uint8), options.tolerance, options.min_area)
        if not found:
            continue
        geometry = (
            {"type": "Polygon", "coordinates": found[0]}
            if len(found) == 1
            else {"type": "MultiPolygon", "coordinates": found}
        )
        properties = {"id": class_id, "label": result.spec.label(class_id)}
        features.append({"type": "Feature", "properties": properties, "geometry": geometry})
    body = {"type": "FeatureCollection", "features": features}
    return Encoded(json.dumps(body).encode(), GEOJSON_TYPE, fields(result, options))
