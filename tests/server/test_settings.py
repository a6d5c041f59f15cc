"""Settings: flags over environment over defaults, every setting documented, clear device errors."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from server.flags import build_parser, load_settings
from server.runtimes.onnxruntime import choose_providers
from server.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "server.md"


def test_flags_override_environment_override_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings([]).max_batch_size == 0  # auto
    monkeypatch.setenv("SEGFORMER_MAX_BATCH_SIZE", "4")
    monkeypatch.setenv("SEGFORMER_MODE", "native")
    settings = load_settings(["--max-batch-size", "2", "--grpc-port", "0"])
    assert (settings.max_batch_size, settings.mode, settings.grpc_port) == (2, "native", 0)
    with pytest.raises(SystemExit):
        load_settings(["--mode", "sideways"])


def test_every_setting_is_documented() -> None:
    for doc in (DOCS, ROOT / "README.md"):
        text = doc.read_text()
        for name in Settings.model_fields:
            flag, env = "--" + name.replace("_", "-"), "SEGFORMER_" + name.upper()
            assert f"`{flag}`" in text and f"`{env}`" in text, (doc.name, name)


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA build")
def test_cuda_requested_without_cuda_fails_clearly() -> None:
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        choose_providers(Settings(device="cuda"))
    assert choose_providers(Settings(device="auto")) == ["CPUExecutionProvider"]


def test_help_lists_every_flag() -> None:
    """``segformer-serve --help`` renders (a ``%`` in a description once broke argparse's formatting)."""
    text = build_parser().format_help()
    assert "--jpeg-draft" in text and "99.2-99.9 %" in text
