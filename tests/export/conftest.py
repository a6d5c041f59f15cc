"""Fixtures for the export tests: the random B0 (loaded once) and its mask+logits graph."""

from __future__ import annotations

import functools
from pathlib import Path

import onnxruntime as ort
import pytest

from model.loading import ModelInfo, load_segformer
from model.segformer import SegFormer


@functools.lru_cache(maxsize=8)
def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the notice that output_size is an overridable initializer is expected
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="session")
def random_b0() -> tuple[SegFormer, ModelInfo]:
    return load_segformer("random:b0")


@pytest.fixture(scope="session")
def random_b0_logits_onnx(
    random_b0: tuple[SegFormer, ModelInfo], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The random B0 exported with ``outputs=mask,logits`` (unverified: the tests check it)."""
    from export.api import export_model

    net, info = random_b0
    out = tmp_path_factory.mktemp("onnx") / "random_b0_logits.onnx"
    return export_model(net, info, out, outputs=["mask", "logits"], verify_graph=False)
