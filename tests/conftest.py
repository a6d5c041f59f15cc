"""Shared fixtures: where the real weights and photos are (``SEGFORMER_TEST_SHARED``; default, as in the
Makefile: ``../shared`` beside the checkout when it has ``weights/``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path | None:
    value = os.environ.get("SEGFORMER_TEST_SHARED")
    if value:
        return Path(value)
    beside = ROOT.parent / "shared"
    return beside if (beside / "weights").is_dir() else None


def _require(path: Path | None, what: str) -> Path:
    """Return ``path`` or skip (fail when ``SEGFORMER_REQUIRE_SHARED=1``, as in CI)."""
    if path is not None and path.exists():
        return path
    reason = (
        f"{what} not available: set SEGFORMER_TEST_SHARED to the shared/ folder "
        f"(with weights/ and data/); looked at {path}"
    )
    if os.environ.get("SEGFORMER_REQUIRE_SHARED") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(_shared_dir(), "shared reference material")


@pytest.fixture(scope="session")
def real_weights_dir(shared_dir: Path) -> Path:
    """Hugging Face layout folder of the real SegFormer-B0 ADE20K weights."""
    return _require(shared_dir / "weights" / "segformer-b0-ade20k", "real B0 ADE20K weights")


@pytest.fixture(scope="session")
def real_photos(shared_dir: Path) -> list[Path]:
    """Real photos: the ADE20K validation image and the unlabeled photos."""
    photos = sorted((shared_dir / "data" / "photos").glob("*.jpg"))
    ade = shared_dir / "data" / "ade20k" / "ADE_val_00000001.jpg"
    found = [ade, *photos] if ade.exists() else photos
    if not found:
        _require(None, "real photos")
    return found


# --- exported graphs shared by tests/export, tests/server, tests/grpc (one export per test session) ---


@pytest.fixture(scope="session")
def random_b0_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``segformer-export random:b0`` (150 classes, default outputs: ``mask``), unverified for speed."""
    from export.api import export_onnx

    return export_onnx("random:b0", tmp_path_factory.mktemp("onnx") / "random_b0.onnx", verify_graph=False)


@pytest.fixture(scope="session")
def real_b0_onnx(real_weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``segformer-export`` of the real B0 ADE20K weights (default outputs: ``mask``), unverified."""
    from export.api import export_onnx

    return export_onnx(real_weights_dir, tmp_path_factory.mktemp("onnx") / "real_b0.onnx", verify_graph=False)


@pytest.fixture(scope="session")
def random_b1_19_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``segformer-export random:b1 --num-labels 19`` (Cityscapes-sized: built-in Cityscapes labels)."""
    from export.api import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "random_b1_19.onnx"
    return export_onnx("random:b1", out, num_labels=19, verify_graph=False)
