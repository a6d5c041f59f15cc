"""mIoU as mmsegmentation's ``IoUMetric`` computes it, in numpy.

Per image, ``intersect_and_union`` drops the pixels whose label is ``ignore_index`` and counts, per
class, the intersection, the predicted area, the label area and the union (pred + label - intersect);
values outside ``[0, num_classes)`` fall in no class (``torch.histc``'s range). Areas are summed over
the whole set, then ``total_area_to_metrics``:

* IoU = intersect / union, Acc = intersect / label area per class (NaN where the denominator is 0: a
  class in neither label nor prediction has NaN IoU; one only in the prediction has IoU 0, Acc NaN),
* aAcc = sum(intersect) / sum(label area),
* mIoU, mAcc = nanmean over the classes.

mmseg reports them ×100 rounded to 2 decimals; ``Metrics`` keeps fractions, ``report`` rounds.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = 255


@dataclass
class Areas:
    """Per-class pixel counts (int64 [num_classes] each), summable over images."""

    intersect: np.ndarray
    union: np.ndarray
    pred: np.ndarray
    label: np.ndarray

    @classmethod
    def zeros(cls, num_classes: int) -> Areas:
        return cls(*(np.zeros(num_classes, dtype=np.int64) for _ in range(4)))

    @property
    def num_classes(self) -> int:
        return int(self.intersect.shape[0])

    def __add__(self, other: Areas) -> Areas:
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot add areas of {self.num_classes} and {other.num_classes} classes")
        return Areas(
            self.intersect + other.intersect,
            self.union + other.union,
            self.pred + other.pred,
            self.label + other.label,
        )


def _histogram(values: np.ndarray, num_classes: int) -> np.ndarray:
    inside = values[(values >= 0) & (values < num_classes)]
    return np.bincount(inside, minlength=num_classes).astype(np.int64)


def intersect_and_union(
    pred: np.ndarray, label: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> Areas:
    """One image's areas: ``pred`` and ``label`` are integer class maps of the same shape."""
    if pred.shape != label.shape:
        raise ValueError(f"prediction {pred.shape} and label {label.shape} differ in shape")
    keep = label != ignore_index
    pred_kept = pred[keep].astype(np.int64, copy=False)
    label_kept = label[keep].astype(np.int64, copy=False)
    intersect = _histogram(pred_kept[pred_kept == label_kept], num_classes)
    area_pred = _histogram(pred_kept, num_classes)
    area_label = _histogram(label_kept, num_classes)
    return Areas(intersect, area_pred + area_label - intersect, area_pred, area_label)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(numerator, dtype=np.float64) / np.asarray(denominator, dtype=np.float64)


def _nanmean(values: np.ndarray) -> float:
    if np.all(np.isnan(values)):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values))


@dataclass(frozen=True)
class Metrics:
    """Fractions in [0, 1] (NaN where undefined): per-class ``iou`` and ``acc``, and the summaries."""

    iou: np.ndarray
    acc: np.ndarray
    aacc: float
    miou: float
    macc: float


def total_area_to_metrics(areas: Areas) -> Metrics:
    """The metrics of areas summed over a set (mmseg's ``total_area_to_metrics``, ``mIoU``)."""
    iou = _ratio(areas.intersect, areas.union)
    acc = _ratio(areas.intersect, areas.label)
    aacc = float(_ratio(areas.intersect.sum(), areas.label.sum()))
    return Metrics(iou=iou, acc=acc, aacc=aacc, miou=_nanmean(iou), macc=_nanmean(acc))


class IoUAccumulator:
    """Sums the areas of image after image (nothing but the counts is kept)."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.ignore_index = ignore_index
        self.areas = Areas.zeros(num_classes)
        self.images = 0

    def add(self, pred: np.ndarray, label: np.ndarray) -> Areas:
        """Count one image; its own areas."""
        one = intersect_and_union(pred, label, self.areas.num_classes, self.ignore_index)
        self.areas = self.areas + one
        self.images += 1
        return one

    def metrics(self) -> Metrics:
        return total_area_to_metrics(self.areas)
