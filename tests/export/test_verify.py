"""Verification fails loudly on a graph that does not reproduce PyTorch, and then writes nothing."""

from __future__ import annotations

import re
from pathlib import Path

import onnx
import pytest
import torch

from export import api
from export.api import export_model
from export.trace import export_network
from export.verify import Case, VerificationError, verify
from model.loading import ModelInfo, load_segformer
from model.segformer import SegFormer

SMALL = [Case(2, 96, 128), Case(1, 75, 131, (100, 90))]


def test_real_weights_graph_verifies(real_b0_onnx: Path, real_weights_dir: Path) -> None:
    net, info = load_segformer(real_weights_dir)
    cases = [Case(2, 512, 512, (480, 640)), Case(1, 333, 517), Case(1, 256, 768)]
    reports = verify(
        onnx.load(str(real_b0_onnx)), net, image_mean=info.image_mean, image_std=info.image_std, cases=cases
    )
    assert len(reports) == 3
    for report in reports:
        assert report.logits_max_abs <= 1e-4
        assert report.mask_mismatch <= 0.001


def _other_b0() -> SegFormer:
    other = load_segformer("random:b0")[0]
    with torch.no_grad():  # a slightly different network: a graph of it does not match random:b0
        other.head.classifier.bias.add_(0.01)
    return other


def test_failed_export_leaves_no_file(
    random_b0: tuple[SegFormer, ModelInfo], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net, info = random_b0
    other = _other_b0()
    monkeypatch.setattr(api, "export_network", lambda _net, opset: export_network(other, opset))
    out = tmp_path / "bad.onnx"
    with pytest.raises(VerificationError, match=r"does not match PyTorch:\n.*logits max-abs .* > 0.0001"):
        export_model(net, info, out, cases=SMALL)
    assert list(tmp_path.iterdir()) == []


def test_verified_export_logs_numbers(random_b0: tuple[SegFormer, ModelInfo], tmp_path: Path) -> None:
    net, info = random_b0
    lines: list[str] = []
    assert export_model(net, info, tmp_path / "ok.onnx", cases=SMALL, log=lines.append).is_file()
    text = "\n".join(lines)
    assert "ONNX checker (full check): ok" in text
    assert text.count("logits max-abs") == 2 and text.count("mask mismatch") == 2
    for stage in ("trace to ONNX", "verify against PyTorch (fp32)", "write "):
        assert re.search(rf"^{re.escape(stage)}.*: \d+\.\d s", text, re.MULTILINE), stage
