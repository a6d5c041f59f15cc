"""Label conventions: ADE20K reduce_zero_label, Cityscapes labelIds → trainIds, custom label maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from client.evaluate.labels import LabelError, mapping_for, read_label_map, reduce_zero_label

# cityscapesScripts helpers/labels.py, (name, id, trainId) of ids 0..33 (trainId 255 = not evaluated)
CITYSCAPES = [
    ("unlabeled", 0, 255), ("ego vehicle", 1, 255), ("rectification border", 2, 255), ("out of roi", 3, 255),
    ("static", 4, 255), ("dynamic", 5, 255), ("ground", 6, 255), ("road", 7, 0), ("sidewalk", 8, 1),
    ("parking", 9, 255), ("rail track", 10, 255), ("building", 11, 2), ("wall", 12, 3), ("fence", 13, 4),
    ("guard rail", 14, 255), ("bridge", 15, 255), ("tunnel", 16, 255), ("pole", 17, 5),
    ("polegroup", 18, 255), ("traffic light", 19, 6), ("traffic sign", 20, 7), ("vegetation", 21, 8),
    ("terrain", 22, 9), ("sky", 23, 10), ("person", 24, 11), ("rider", 25, 12), ("car", 26, 13),
    ("truck", 27, 14), ("bus", 28, 15), ("caravan", 29, 255), ("trailer", 30, 255), ("train", 31, 16),
    ("motorcycle", 32, 17), ("bicycle", 33, 18),
]  # fmt: skip


def test_ade20k_reduces_the_zero_label() -> None:
    mapping = mapping_for("ade20k")
    assert mapping.num_classes == 150
    label = np.array([[0, 1, 2], [150, 255, 0]], dtype=np.uint8)
    assert mapping.apply(label).tolist() == [[255, 0, 1], [149, 255, 255]]


def test_cityscapes_label_ids_become_train_ids() -> None:
    ids = mapping_for("cityscapes", cityscapes_ids=True)
    assert ids.num_classes == 19
    label = np.array([[i for _, i, _ in CITYSCAPES]], dtype=np.uint8)
    assert ids.apply(label).tolist() == [[t for _, _, t in CITYSCAPES]]
    assert sorted({t for _, _, t in CITYSCAPES} - {255}) == list(range(19))
    assert ids.apply(np.array([[34, 100, 255]], dtype=np.uint8)).tolist() == [[255, 255, 255]]
    train_ids = mapping_for("cityscapes")  # *_labelTrainIds.png: as stored, like mmseg
    assert train_ids.apply(np.array([[0, 18, 255]], dtype=np.uint8)).tolist() == [[0, 18, 255]]


def test_custom_label_map_json_and_text_applied_before_reduce_zero_label(tmp_path: Path) -> None:
    (tmp_path / "map.json").write_text('{"10": 1, "20": 2}')
    (tmp_path / "map.txt").write_text("# old new\n10 1\n20 2  # trailing comment\n\n")
    for name in ("map.json", "map.txt"):
        assert read_label_map(tmp_path / name) == {10: 1, 20: 2}
        plain = mapping_for("custom", label_map=tmp_path / name)
        assert plain.num_classes is None  # the model's
        assert plain.apply(np.array([[10, 20, 3]])).tolist() == [[1, 2, 3]]
        reduced = mapping_for("custom", label_map=tmp_path / name, zero_label=True)
        assert reduced.apply(np.array([[10, 20, 0, 255]])).tolist() == [[0, 1, 255, 255]]
    assert mapping_for("custom").apply(np.array([[7, 255]])).tolist() == [[7, 255]]


def test_reduce_zero_label_on_16_bit_labels() -> None:
    assert reduce_zero_label(np.array([0, 1, 300, 255], dtype=np.uint16)).tolist() == [255, 0, 299, 255]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10 1 2\n", "expected 'old new'"),
        ('{"a": 1}', "invalid literal"),
        ("5 70000\n", r"values must be in \[0, 65536\)"),
        ("[1, 2]", "invalid literal"),
    ],
)
def test_bad_label_maps_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad-map.txt"
    path.write_text(text)
    with pytest.raises(LabelError, match=message) as caught:
        mapping_for("custom", label_map=path)
    assert str(path) in str(caught.value)
    with pytest.raises(LabelError, match=r"missing\.json"):
        read_label_map(tmp_path / "missing.json")


def test_unknown_dataset() -> None:
    with pytest.raises(LabelError, match="unknown dataset 'voc': choose one of ade20k, cityscapes, custom"):
        mapping_for("voc")
