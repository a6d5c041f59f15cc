"""A labelled folder: which annotation goes with which image, and reading one annotation.

Images are found recursively under ``--images`` (sorted by relative path); each image's annotation is
at the same relative folder under ``--labels``:

* ``ade20k`` / ``custom``: ``NAME.png`` for ``NAME.jpg`` (``images/validation/ADE_val_00000001.jpg`` →
  ``annotations/validation/ADE_val_00000001.png``),
* ``cityscapes``: ``CITY_X_Y_leftImg8bit.png`` → ``CITY_X_Y_gtFine_labelTrainIds.png``, else
  ``CITY_X_Y_gtFine_labelIds.png`` (mapped to trainIds).

Both may be one folder: files that are another image's annotation are not taken for images. Every
annotation is checked to exist before the first request; annotations are read one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from client.evaluate.labels import LUT_SIZE, LabelError, LabelMapping, mapping_for
from client.types import IMAGE_SUFFIXES

CITYSCAPES_IMAGE_SUFFIX = "_leftImg8bit"


@dataclass(frozen=True)
class Pair:
    image: Path
    label: Path
    mapping: LabelMapping


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _candidates(image: Path, images: Path, labels: Path, dataset: str) -> list[Path]:
    folder = labels / image.parent.relative_to(images)
    if dataset != "cityscapes":
        return [folder / f"{image.stem}.png"]
    stem = image.stem.removesuffix(CITYSCAPES_IMAGE_SUFFIX)
    return [folder / f"{stem}_gtFine_labelTrainIds.png", folder / f"{stem}_gtFine_labelIds.png"]


def pairs(
    images: Path, labels: Path, dataset: str, *, label_map: Path | None = None, zero_label: bool = False
) -> list[Pair]:
    """Every image with its annotation; ``LabelError`` naming the files when a folder or label is missing."""
    for what, folder in (("images", images), ("labels", labels)):
        if not folder.is_dir():
            raise LabelError(f"{what} folder {folder} does not exist or is not a folder")
    mapping = mapping_for(dataset, label_map=label_map, zero_label=zero_label)
    ids = mapping_for(dataset, cityscapes_ids=True) if dataset == "cityscapes" else mapping
    found = _images(images)
    wanted = {image: _candidates(image, images, labels, dataset) for image in found}
    annotations = {c.resolve() for options in wanted.values() for c in options}
    result: list[Pair] = []
    missing: list[str] = []
    for image, options in wanted.items():
        if image.resolve() in annotations:  # an annotation in a shared folder, not an image
            continue
        label = next((c for c in options if c.is_file()), None)
        if label is None:
            missing.append(f"{image} (expected {' or '.join(str(c) for c in options)})")
            continue
        result.append(Pair(image, label, ids if label.name.endswith("_gtFine_labelIds.png") else mapping))
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise LabelError(f"no annotation for {len(missing)} image(s): {'; '.join(missing[:3])}{more}")
    if not result:
        raise LabelError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {images}")
    return result


def read_label(pair: Pair) -> np.ndarray:
    """The annotation of ``pair`` as class ids (int64 [H, W]; 255 = ignore)."""
    try:
        with Image.open(pair.label) as image:
            if image.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise LabelError(
                    f"label {pair.label}: a {image.mode} image; expected a single-channel PNG of class ids"
                )
            array = np.asarray(image)
    except (OSError, UnidentifiedImageError) as exc:
        raise LabelError(f"label {pair.label}: cannot be read ({exc})") from None
    if array.size and (array.min() < 0 or array.max() >= LUT_SIZE):
        raise LabelError(f"label {pair.label}: values outside [0, {LUT_SIZE})")
    return pair.mapping.apply(array.astype(np.int64, copy=False))
