"""Pairing images with annotations, and reading annotations; bad folders give errors naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from client.evaluate.dataset import pairs, read_label
from client.evaluate.labels import LabelError


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _jpg(path: Path, height: int = 8, width: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (120, 30, 200)).save(path, format="JPEG")
    return path


def test_ade20k_layout_recursive_and_sorted(tmp_path: Path) -> None:
    images, labels = tmp_path / "images", tmp_path / "annotations"
    for name in ("validation/b", "validation/a", "extra/sub/c"):
        _jpg(images / f"{name}.jpg")
        _png(labels / f"{name}.png", np.array([[0, 1], [2, 255]], dtype=np.uint8))
    found = pairs(images, labels, "ade20k")
    assert [p.image.relative_to(images).as_posix() for p in found] == [
        "extra/sub/c.jpg", "validation/a.jpg", "validation/b.jpg",
    ]  # fmt: skip
    assert found[1].label == labels / "validation" / "a.png"
    assert read_label(found[0]).tolist() == [[255, 0], [1, 255]]


def test_one_folder_for_images_and_annotations(tmp_path: Path) -> None:
    _jpg(tmp_path / "ADE_val_1.jpg")
    _png(tmp_path / "ADE_val_1.png", np.zeros((8, 10), dtype=np.uint8))
    (tmp_path / "objectInfo150.csv").write_text("not an image")
    found = pairs(tmp_path, tmp_path, "ade20k")
    assert [(p.image.name, p.label.name) for p in found] == [("ADE_val_1.jpg", "ADE_val_1.png")]


def test_cityscapes_prefers_train_ids_and_maps_label_ids(tmp_path: Path) -> None:
    images, labels = tmp_path / "leftImg8bit" / "val", tmp_path / "gtFine" / "val"
    _png(images / "frankfurt" / "frankfurt_000000_000294_leftImg8bit.png", np.zeros((4, 4, 3), np.uint8))
    _png(images / "lindau" / "lindau_000000_000019_leftImg8bit.png", np.zeros((4, 4, 3), np.uint8))
    ids = np.array([[7, 8], [26, 0]], dtype=np.uint8)
    _png(labels / "frankfurt" / "frankfurt_000000_000294_gtFine_labelIds.png", ids)
    _png(labels / "lindau" / "lindau_000000_000019_gtFine_labelIds.png", ids)
    _png(labels / "lindau" / "lindau_000000_000019_gtFine_labelTrainIds.png", np.full((2, 2), 5, np.uint8))
    frankfurt, lindau = pairs(images, labels, "cityscapes")
    assert frankfurt.label.name.endswith("_labelIds.png")
    assert read_label(frankfurt).tolist() == [[0, 1], [13, 255]]
    assert lindau.label.name.endswith("_labelTrainIds.png")
    assert read_label(lindau).tolist() == [[5, 5], [5, 5]]


def test_a_missing_annotation_names_the_image_and_the_expected_file(tmp_path: Path) -> None:
    images, labels = tmp_path / "images", tmp_path / "labels"
    _jpg(images / "has.jpg")
    _png(labels / "has.png", np.zeros((8, 10), np.uint8))
    _jpg(images / "lacks.jpg")
    with pytest.raises(LabelError) as caught:
        pairs(images, labels, "ade20k")
    message = str(caught.value)
    assert "no annotation for 1 image(s)" in message
    assert str(images / "lacks.jpg") in message and str(labels / "lacks.png") in message


def test_missing_or_empty_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(LabelError, match=f"images folder {tmp_path / 'nope'} does not exist"):
        pairs(tmp_path / "nope", tmp_path, "ade20k")
    with pytest.raises(LabelError, match=f"labels folder {tmp_path / 'nope'} does not exist"):
        pairs(tmp_path / "empty", tmp_path / "nope", "ade20k")
    with pytest.raises(LabelError, match=f"no images .* under {tmp_path / 'empty'}"):
        pairs(tmp_path / "empty", tmp_path, "ade20k")
    with pytest.raises(LabelError, match="unknown dataset 'coco'"):
        pairs(tmp_path / "empty", tmp_path, "coco")


def test_unusable_annotations_name_the_file(tmp_path: Path) -> None:
    _jpg(tmp_path / "images" / "rgb.jpg")
    _png(tmp_path / "labels" / "rgb.png", np.zeros((8, 10, 3), np.uint8))
    _jpg(tmp_path / "images" / "torn.jpg")
    (tmp_path / "labels" / "torn.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rgb, torn = pairs(tmp_path / "images", tmp_path / "labels", "ade20k")
    with pytest.raises(LabelError, match=f"label {rgb.label}: a RGB image; expected a single-channel PNG"):
        read_label(rgb)
    with pytest.raises(LabelError, match=f"label {torn.label}: cannot be read"):
        read_label(torn)
