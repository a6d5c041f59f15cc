"""Model names from ``--model`` arguments and repository folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.flags import load_settings
from server.settings import DEFAULT_MODEL, Settings
from server.source import check_name, default_name, parse_model_arg, scan_repository


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("ade=/models/b0.onnx", ("ade", "/models/b0.onnx")),
        ("/models/b0-ade.onnx", ("b0-ade", "/models/b0-ade.onnx")),
        ("nvidia/segformer-b0-finetuned-ade-512-512", ("segformer-b0-finetuned-ade-512-512", DEFAULT_MODEL)),
        ("random:b0", ("random-b0", "random:b0")),
        ("street=random:b1", ("street", "random:b1")),
        ("./odd=name.onnx", ("odd-name", "./odd=name.onnx")),
        ("weights/segformer-b0-ade20k/", ("segformer-b0-ade20k", "weights/segformer-b0-ade20k/")),
    ],
)
def test_parse_model_arg(arg: str, expected: tuple[str, str]) -> None:
    assert parse_model_arg(arg) == expected


def test_names_are_url_segments() -> None:
    assert check_name("b0.ade_v2-x") == "b0.ade_v2-x"
    for bad in ("", "a/b", "-x", "a b", "x" * 129):
        with pytest.raises(ValueError, match="invalid model name"):
            check_name(bad)
    assert default_name("a b/c d.pth") == "c-d"


def test_scan_repository(tmp_path: Path) -> None:
    (tmp_path / "b.onnx").write_bytes(b"")
    (tmp_path / "a.pth").write_bytes(b"")
    (tmp_path / "hf-folder").mkdir()
    (tmp_path / "readme.txt").write_text("")
    (tmp_path / ".hidden.onnx").write_bytes(b"")
    found = scan_repository(tmp_path)
    assert list(found) == ["a", "b", "hf-folder"]
    with pytest.raises(FileNotFoundError, match="no such folder"):
        scan_repository(tmp_path / "missing")


def test_model_flags_repeat_and_environment_splits(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(["--model", "a=x.onnx", "--model", "y.onnx"]).model == ["a=x.onnx", "y.onnx"]
    monkeypatch.setenv("SEGFORMER_MODEL", "a=x.onnx, b=y.onnx")
    assert Settings().model == ["a=x.onnx", "b=y.onnx"]
    monkeypatch.delenv("SEGFORMER_MODEL")
    assert Settings().model_sources() == [DEFAULT_MODEL]
    assert Settings(model_repository="/models").model_sources() == []
