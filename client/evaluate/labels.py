"""From an annotation file's values to the class ids the model predicts, per dataset (as mmseg loads them).

* ``ade20k``: ADEChallengeData2016 annotations, 0 = "other" (ignored) and k = class k-1: mmseg's
  ``reduce_zero_label`` (0 → 255, k → k-1, 255 stays 255). 150 classes.
* ``cityscapes``: ``*_gtFine_labelTrainIds.png`` as they are (what mmseg reads), or
  ``*_gtFine_labelIds.png`` mapped ``labelIds → trainIds`` with cityscapesScripts' table (every id
  that is not one of the 19 evaluated classes → 255). 19 classes.
* ``custom``: an optional label map file (applied first, as mmseg applies ``label_map`` before
  ``reduce_zero_label``) and optional ``reduce_zero_label``; the class count is the model's.

A label map file is JSON ``{"old": new, ...}`` or text lines ``old new`` (``#`` comments); values
not in it stay as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from client.evaluate.metrics import IGNORE_INDEX

DATASETS = ("ade20k", "cityscapes", "custom")
ADE20K_CLASSES = 150
CITYSCAPES_CLASSES = 19
# cityscapesScripts helpers/labels.py: labelId → trainId for the 19 evaluated classes (all others: 255)
CITYSCAPES_TRAIN_IDS: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
LUT_SIZE = 65536  # labels are 8- or 16-bit PNGs


class LabelError(ValueError):
    """A label file, label map or dataset that cannot be used (the message names the file)."""


def _lut(mapping: dict[int, int], default_identity: bool) -> np.ndarray:
    lut = np.arange(LUT_SIZE, dtype=np.int64) if default_identity else np.full(LUT_SIZE, IGNORE_INDEX)
    for old, new in mapping.items():
        lut[old] = new
    return lut


def cityscapes_lut() -> np.ndarray:
    """labelIds → trainIds (unlisted ids → 255)."""
    return _lut(CITYSCAPES_TRAIN_IDS, default_identity=False)


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """mmseg's ``reduce_zero_label``: 0 → 255 (ignored), k → k-1, 255 stays 255."""
    out = label.astype(np.int64) - 1
    out[label == 0] = IGNORE_INDEX
    out[label == IGNORE_INDEX] = IGNORE_INDEX
    return out


def read_label_map(path: Path) -> dict[int, int]:
    """A label map file: JSON object ``{"old": new}`` or lines ``old new``."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise LabelError(f"label map {path}: {exc.strerror or exc}") from None
    try:
        if text.lstrip().startswith("{"):
            pairs = [(int(k), int(v)) for k, v in json.loads(text).items()]
        else:
            pairs = []
            for line in text.splitlines():
                fields = line.split("#", 1)[0].split()
                if fields:
                    if len(fields) != 2:
                        raise ValueError(f"expected 'old new', got {line!r}")
                    pairs.append((int(fields[0]), int(fields[1])))
    except (ValueError, TypeError, AttributeError) as exc:
        raise LabelError(f"label map {path}: {exc}") from None
    bad = [old for old, new in pairs if not (0 <= old < LUT_SIZE and 0 <= new < LUT_SIZE)]
    if bad:
        raise LabelError(f"label map {path}: values must be in [0, {LUT_SIZE}), got {bad[:5]}")
    return dict(pairs)


@dataclass(frozen=True)
class LabelMapping:
    """How one dataset's annotation values become class ids (``apply``) and how many classes it has."""

    dataset: str
    num_classes: int | None  # None: the model's
    lut: np.ndarray | None = None  # applied first (label map, or Cityscapes labelIds → trainIds)
    reduce_zero_label: bool = False

    def apply(self, label: np.ndarray) -> np.ndarray:
        out = self.lut[label] if self.lut is not None else label.astype(np.int64)
        return reduce_zero_label(out) if self.reduce_zero_label else out

    def describe(self) -> str:
        steps = (
            ["label map" if self.dataset == "custom" else "labelIds → trainIds"]
            if self.lut is not None
            else []
        )
        steps += ["reduce_zero_label"] if self.reduce_zero_label else []
        return f"{self.dataset} ({', '.join(steps) or 'as stored'})"


def mapping_for(
    dataset: str, *, label_map: Path | None = None, zero_label: bool = False, cityscapes_ids: bool = False
) -> LabelMapping:
    """The mapping of ``dataset``; ``cityscapes_ids``: the files are ``labelIds`` (not ``labelTrainIds``)."""
    if dataset == "ade20k":
        return LabelMapping("ade20k", ADE20K_CLASSES, reduce_zero_label=True)
    if dataset == "cityscapes":
        return LabelMapping("cityscapes", CITYSCAPES_CLASSES, cityscapes_lut() if cityscapes_ids else None)
    if dataset == "custom":
        lut = _lut(read_label_map(label_map), default_identity=True) if label_map else None
        return LabelMapping("custom", None, lut, reduce_zero_label=zero_label)
    raise LabelError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
