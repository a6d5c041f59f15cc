"""The table, the JSON and the comparison of two runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from client.evaluate import report
from client.evaluate.metrics import IoUAccumulator
from client.evaluate.runner import Evaluation

NAMES = ["wall", "sky", "tree", "road"]


def _run(pred: list[list[int]], label: list[list[int]], **info: Any) -> Evaluation:
    acc = IoUAccumulator(num_classes=4)
    acc.add(np.array(pred), np.array(label))
    base = {"model": "m", "precision": "fp32", "mode": "resize", "dataset": "custom", "labels": ["custom"]}
    base |= {"transport": "rest", "url": "http://x", "images": 1, "seconds": 1.0, "images_per_second": 1.0}
    return Evaluation(acc, acc.metrics(), NAMES, 1.0, base | info)


LABEL = [[0, 0, 1, 1, 2, 255]]
A = _run([[0, 0, 1, 1, 2, 3]], LABEL)  # perfect on 0, 1, 2; road only under the ignored pixel
B = _run([[0, 1, 1, 1, 3, 3]], LABEL, precision="fp16")  # wall 0.5, sky 2/3, tree 0, road only predicted


def test_json_keeps_percentages_counts_and_nan_as_null(tmp_path: Path) -> None:
    report.write_json(B, tmp_path / "b.json")
    run = report.read_json(tmp_path / "b.json")
    assert run["format"] == "segformer-eval/1" and run["precision"] == "fp16" and run["num_classes"] == 4
    wall, sky, tree, road = run["classes"]
    assert (wall["iou"], wall["acc"]) == (50.0, 50.0)
    assert sky["iou"] == pytest.approx(200 / 3) and sky["acc"] == 100.0
    assert (tree["iou"], tree["acc"]) == (0.0, 0.0)
    assert road["iou"] == 0.0 and road["acc"] is None  # only predicted: Acc NaN → null
    assert (road["pred"], road["label_pixels"], road["union"]) == (1, 0, 1)
    assert run["aAcc"] == pytest.approx(60.0) and run["mAcc"] == pytest.approx(50.0)
    assert run["mIoU"] == pytest.approx((50 + 200 / 3 + 0 + 0) / 4)
    assert json.loads((tmp_path / "b.json").read_text()) == run


def test_table_lists_seen_classes_and_the_means() -> None:
    text = report.table(report.to_json(A))
    assert "   0  wall    100.00   100.00" in text and "road" not in text
    assert "(1 classes in neither labels nor predictions: IoU nan, left out of the means)" in text
    assert "aAcc 100.00  mIoU 100.00  mAcc 100.00" in text
    assert "   3  road      0.00      nan" in report.table(report.to_json(B))


def test_compare_sorts_classes_by_the_iou_change() -> None:
    text = report.compare(report.to_json(A), report.to_json(B))
    lines = text.splitlines()
    assert lines[0].startswith("A: m fp32 mode=resize") and lines[1].startswith("B: m fp16 mode=resize")
    assert "  mIoU   100.00    29.17   -70.83" in text
    rows = [line.split()[1] for line in lines[lines.index(next(x for x in lines if "ΔIoU" in x)) + 1 :]]
    assert rows == ["tree", "wall", "sky", "road"]  # -100, -50, -33.3, then road (NaN in A: no delta)
    assert len(report.compare(report.to_json(A), report.to_json(B), top=2).splitlines()) == len(lines) - 1


def test_compare_refuses_runs_of_different_class_counts(tmp_path: Path) -> None:
    other = report.to_json(A) | {"num_classes": 150}
    with pytest.raises(ValueError, match="4 and 150 classes"):
        report.compare(report.to_json(A), other)
    (tmp_path / "x.json").write_text('{"mIoU": 1}')
    with pytest.raises(ValueError, match="not a segformer-eval/1 file"):
        report.read_json(tmp_path / "x.json")
