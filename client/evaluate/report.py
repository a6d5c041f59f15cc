"""An evaluation as a terminal table and as JSON, and the side-by-side comparison of two JSON runs.

Percentages, as mmseg prints them (its tables round to 2 decimals; the JSON keeps the unrounded value
and the pixel counts, so runs can be re-checked or summed). NaN (a class in neither the labels nor the
predictions; Acc of a class absent from the labels) is ``null`` in JSON and ``nan`` on the terminal.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from client.evaluate.runner import Evaluation

FORMAT = "segformer-eval/1"


def _pct(value: float) -> float | None:
    return None if math.isnan(value) else 100.0 * float(value)


def to_json(evaluation: Evaluation) -> dict[str, Any]:
    m, areas = evaluation.metrics, evaluation.accumulator.areas
    classes = [
        {
            "id": i,
            "label": name,
            "iou": _pct(m.iou[i]),
            "acc": _pct(m.acc[i]),
            "intersect": int(areas.intersect[i]),
            "union": int(areas.union[i]),
            "pred": int(areas.pred[i]),
            "label_pixels": int(areas.label[i]),
        }
        for i, name in enumerate(evaluation.class_names)
    ]
    return {
        "format": FORMAT,
        **evaluation.info,
        "num_classes": len(classes),
        "ignore_index": evaluation.accumulator.ignore_index,
        "aAcc": _pct(m.aacc),
        "mIoU": _pct(m.miou),
        "mAcc": _pct(m.macc),
        "classes": classes,
    }


def write_json(evaluation: Evaluation, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(evaluation), indent=1) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    try:
        run: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable segformer-eval JSON ({exc})") from None
    if not isinstance(run, dict) or run.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} file")
    return run


def _num(value: float | None, width: int = 7, sign: bool = False) -> str:
    if value is None:
        return f"{'nan':>{width}}"
    return f"{value:>+{width}.2f}" if sign else f"{value:>{width}.2f}"


def _who(run: dict[str, Any]) -> str:
    runtime = f" on {run['runtime']}" if run.get("runtime") else ""
    what = f"{run.get('model')} {run.get('precision')}{runtime}"
    return f"{what} mode={run.get('mode')} via {run.get('transport')}"


def table(run: dict[str, Any], all_classes: bool = False) -> str:
    """The summary and the per-class table (classes seen in labels or predictions, unless ``all_classes``)."""
    rows = [c for c in run["classes"] if all_classes or c["union"] > 0]
    width = max([len(c["label"]) for c in rows] + [5])
    lines = [
        f"{_who(run)}: {run['images']} images, labels {', '.join(run['labels'])}, "
        f"{run['images_per_second']:.2f} img/s",
        f"{'id':>4}  {'class':<{width}}  {'IoU':>7}  {'Acc':>7}",
    ]
    lines += [f"{c['id']:>4}  {c['label']:<{width}}  {_num(c['iou'])}  {_num(c['acc'])}" for c in rows]
    hidden = len(run["classes"]) - len(rows)
    if hidden:
        lines.append(f"({hidden} classes in neither labels nor predictions: IoU nan, left out of the means)")
    lines.append(f"aAcc {_num(run['aAcc'], 0)}  mIoU {_num(run['mIoU'], 0)}  mAcc {_num(run['mAcc'], 0)}")
    return "\n".join(lines)


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def compare(a: dict[str, Any], b: dict[str, Any], top: int | None = None) -> str:
    """B minus A: the summaries, then the classes sorted by |ΔIoU| (undefined deltas last)."""
    if a["num_classes"] != b["num_classes"]:
        raise ValueError(f"the runs have {a['num_classes']} and {b['num_classes']} classes: not comparable")
    lines = [f"A: {_who(a)}, {a['images']} images", f"B: {_who(b)}, {b['images']} images"]
    if a["images"] != b["images"]:
        lines.append(f"warning: A has {a['images']} images and B {b['images']}: not the same set?")
    lines.append(f"{'':>6}  {'A':>7}  {'B':>7}  {'B-A':>7}")
    for key in ("mIoU", "mAcc", "aAcc"):
        lines.append(f"{key:>6}  {_num(a[key])}  {_num(b[key])}  {_num(_delta(a[key], b[key]), sign=True)}")
    rows = []
    for ca, cb in zip(a["classes"], b["classes"], strict=True):
        if ca["union"] or cb["union"]:
            rows.append((ca, cb, _delta(ca["iou"], cb["iou"]), _delta(ca["acc"], cb["acc"])))
    rows.sort(key=lambda r: (r[2] is None, -abs(r[2] or 0.0), r[0]["id"]))
    shown = rows if top is None else rows[:top]
    width = max([len(r[0]["label"]) for r in shown] + [5])
    lines.append(
        f"{'id':>4}  {'class':<{width}}  {'IoU A':>7}  {'IoU B':>7}  {'ΔIoU':>7}  "
        f"{'Acc A':>7}  {'Acc B':>7}  {'ΔAcc':>7}"
    )
    for ca, cb, d_iou, d_acc in shown:
        lines.append(
            f"{ca['id']:>4}  {ca['label']:<{width}}  {_num(ca['iou'])}  {_num(cb['iou'])}  "
            f"{_num(d_iou, sign=True)}  {_num(ca['acc'])}  {_num(cb['acc'])}  {_num(d_acc, sign=True)}"
        )
    if len(shown) < len(rows):
        lines.append(f"({len(rows) - len(shown)} more classes; --top to show more)")
    return "\n".join(lines)
