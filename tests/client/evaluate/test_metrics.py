"""The metrics on small masks whose IoUs are computed by hand (and against a per-class loop)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from client.evaluate.metrics import Areas, IoUAccumulator, intersect_and_union, total_area_to_metrics

X = 255  # ignored
LABEL = np.array([[0, 0, 1, 1], [2, 2, X, X], [3, 3, 0, 1]])
PRED = np.array([[0, 1, 1, 1], [2, 4, 0, 2], [3, 0, 0, 1]])


def test_hand_computed_ious_with_ignore_and_absent_and_prediction_only_classes() -> None:
    # kept pixels (label != 255): 10. Class 4 is only in the prediction, class 5 in neither.
    areas = intersect_and_union(PRED, LABEL, num_classes=6)
    assert areas.intersect.tolist() == [2, 3, 1, 1, 0, 0]
    assert areas.pred.tolist() == [3, 4, 1, 1, 1, 0]  # the two predictions under 255 are not counted
    assert areas.label.tolist() == [3, 3, 2, 2, 0, 0]
    assert areas.union.tolist() == [4, 4, 2, 2, 1, 0]
    m = total_area_to_metrics(areas)
    assert m.iou[:5].tolist() == [0.5, 0.75, 0.5, 0.5, 0.0]  # only predicted: IoU 0, counted in the mean
    assert math.isnan(m.iou[5])  # in neither: NaN, left out of the mean
    assert m.acc[:4].tolist() == pytest.approx([2 / 3, 1.0, 0.5, 0.5])
    assert math.isnan(m.acc[4]) and math.isnan(m.acc[5])  # no label pixels: Acc NaN
    assert m.aacc == pytest.approx(7 / 10)
    assert m.miou == pytest.approx((0.5 + 0.75 + 0.5 + 0.5 + 0.0) / 5)
    assert m.macc == pytest.approx((2 / 3 + 1.0 + 0.5 + 0.5) / 4)


def test_out_of_range_values_fall_in_no_class() -> None:
    # like torch.histc(min=0, max=C-1): a label 200 (not 255) is in no class but its pixel is kept,
    # so the prediction there counts against the predicted class; a prediction 9 counts nowhere
    label = np.array([[0, 200, 1]])
    pred = np.array([[0, 1, 9]])
    areas = intersect_and_union(pred, label, num_classes=3)
    assert areas.intersect.tolist() == [1, 0, 0]
    assert areas.pred.tolist() == [1, 1, 0]
    assert areas.label.tolist() == [1, 1, 0]
    assert areas.union.tolist() == [1, 2, 0]


def test_areas_are_summed_over_the_set_not_averaged_per_image() -> None:
    acc = IoUAccumulator(num_classes=2)
    acc.add(np.array([[0]]), np.array([[0]]))  # IoU(0) = 1 on its own
    acc.add(np.array([[1, 1, 1]]), np.array([[0, 0, 0]]))  # IoU(0) = 0 on its own
    assert acc.images == 2
    m = acc.metrics()
    assert m.iou.tolist() == [0.25, 0.0]  # 1 / (4 + 3 - 1) summed, not (1 + 0) / 2
    assert m.aacc == 0.25


def test_everything_ignored_gives_nan_not_an_error() -> None:
    m = total_area_to_metrics(intersect_and_union(np.zeros((2, 2)), np.full((2, 2), X), num_classes=3))
    assert all(math.isnan(v) for v in (m.aacc, m.miou, m.macc))


def test_shapes_must_match_and_class_counts_must_agree() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        intersect_and_union(np.zeros((2, 3)), np.zeros((3, 2)), num_classes=2)
    with pytest.raises(ValueError, match="2 and 3 classes"):
        Areas.zeros(2) + Areas.zeros(3)


def _loop(pred: np.ndarray, label: np.ndarray, classes: int) -> tuple[list[int], list[int], list[int]]:
    inter, pred_area, label_area = [], [], []
    keep = label != X
    for c in range(classes):
        inter.append(int(((pred == c) & (label == c) & keep).sum()))
        pred_area.append(int(((pred == c) & keep).sum()))
        label_area.append(int(((label == c) & keep).sum()))
    return inter, pred_area, label_area


masks = arrays(np.int64, (6, 7), elements=st.sampled_from([0, 1, 2, 3, 4, 7, 255]))


@settings(max_examples=200, deadline=None)
@given(pred=masks, label=masks)
def test_matches_a_per_class_loop(pred: np.ndarray, label: np.ndarray) -> None:
    areas = intersect_and_union(pred, label, num_classes=5)
    inter, pred_area, label_area = _loop(pred, label, 5)
    assert areas.intersect.tolist() == inter
    assert areas.pred.tolist() == pred_area
    assert areas.label.tolist() == label_area
    assert areas.union.tolist() == [p + q - i for p, q, i in zip(pred_area, label_area, inter, strict=True)]
