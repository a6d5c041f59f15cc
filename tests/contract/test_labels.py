"""contract.labels: built-in sets, label files, precedence, and that it stays torch-free."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from contract.labels import (
    ADE20K_NAMES,
    ADE20K_PALETTE,
    CITYSCAPES_NAMES,
    CITYSCAPES_PALETTE,
    builtin_for,
    generated_palette,
    read_label_file,
    resolve_labels,
)

ROOT = Path(__file__).resolve().parents[2]


def test_import_does_not_pull_torch() -> None:
    names = ("labels", "metadata", "graph", "upsample", "spec", "foreign")
    modules = ", ".join(f"contract.{m}" for m in names)
    code = f"import sys, {modules}; sys.exit(1 if 'torch' in sys.modules else 0)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr or "importing contract imported torch"


def test_builtin_sets() -> None:
    assert len(ADE20K_NAMES) == len(ADE20K_PALETTE) == 150
    assert ADE20K_NAMES[:3] == ("wall", "building", "sky") and ADE20K_NAMES[-1] == "flag"
    assert ADE20K_PALETTE[0] == (120, 120, 120) and ADE20K_PALETTE[-1] == (92, 0, 255)
    assert len(CITYSCAPES_NAMES) == len(CITYSCAPES_PALETTE) == 19
    assert CITYSCAPES_NAMES[0] == "road" and CITYSCAPES_NAMES[-1] == "bicycle"
    assert CITYSCAPES_PALETTE[0] == (128, 64, 128) and CITYSCAPES_PALETTE[-1] == (119, 11, 32)
    assert builtin_for(150) == (dict(enumerate(ADE20K_NAMES)), ADE20K_PALETTE)
    assert builtin_for(19) == (dict(enumerate(CITYSCAPES_NAMES)), CITYSCAPES_PALETTE)
    assert builtin_for(3) is None


def test_generated_palette_is_deterministic_and_distinct() -> None:
    palette = generated_palette(64)
    assert palette == generated_palette(64) and len(set(palette)) == 64
    assert all(0 <= c <= 255 for rgb in palette for c in rgb)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("labels.json", json.dumps({"1": "cat", "0": "background"})),
        ("labels.json", json.dumps(["background", "cat"])),
        ("config.json", json.dumps({"id2label": {"0": "background", "1": "cat"}})),
        ("labels.txt", "background\n\n# comment\ncat\n"),
    ],
)
def test_label_files(tmp_path: Path, name: str, content: str) -> None:
    (tmp_path / name).write_text(content)
    assert read_label_file(tmp_path / name) == ({0: "background", 1: "cat"}, None)


def test_label_file_with_colours(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("background, 0, 0, 0\nred thing,255,0,0\n")
    id2label, palette = read_label_file(tmp_path / "labels.csv")
    assert id2label == {0: "background", 1: "red thing"} and palette == [(0, 0, 0), (255, 0, 0)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,1,2,3\nb\n", "colour on every line or on none"),
        ("a,1,2\n", "expected 'name' or 'name,r,g,b'"),
        ("a,x,2,3\n", "expected 'name' or 'name,r,g,b'"),
        ("a,1,2,300\n", "0..255"),
    ],
)
def test_bad_label_files(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "labels.txt").write_text(content)
    with pytest.raises(ValueError, match=message):
        read_label_file(tmp_path / "labels.txt")


def test_ids_must_be_contiguous(tmp_path: Path) -> None:
    (tmp_path / "labels.json").write_text(json.dumps({"0": "a", "2": "b"}))
    with pytest.raises(ValueError, match="without gaps"):
        read_label_file(tmp_path / "labels.json")


def test_precedence() -> None:
    checkpoint = {0: "sky", 1: "ground"}
    assert resolve_labels(2, ["a", "b"], checkpoint)[0] == {0: "a", 1: "b"}
    id2label, palette = resolve_labels(2, None, checkpoint, [[1, 2, 3], [4, 5, 6]])
    assert id2label == checkpoint and palette == [(1, 2, 3), (4, 5, 6)]
    assert resolve_labels(2, None, checkpoint)[1] == generated_palette(2)
    # transformers' placeholder names carry nothing: fall back to the built-in set by class count
    placeholder = {i: f"LABEL_{i}" for i in range(19)}
    assert resolve_labels(19, None, placeholder) == (dict(enumerate(CITYSCAPES_NAMES)), CITYSCAPES_PALETTE)
    assert resolve_labels(150, "ade20k")[1] == ADE20K_PALETTE
    # checkpoint names that are the ADE20K ones get the ADE20K palette
    assert resolve_labels(150, None, dict(enumerate(ADE20K_NAMES)))[1] == ADE20K_PALETTE
    assert resolve_labels(3) == ({0: "class_0", 1: "class_1", 2: "class_2"}, generated_palette(3))
    with pytest.raises(ValueError, match="has 3 classes but the labels give 19"):
        resolve_labels(3, "cityscapes")
