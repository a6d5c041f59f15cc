"""``segformer-export`` end to end in a subprocess, and its argument errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from contract.metadata import decode_metadata, read_metadata
from export.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_cli_exports_and_verifies(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "b0.onnx"
    argv = [
        sys.executable, "-m", "export", "random:b0", "-o", str(out),
        "--num-labels", "19", "--outputs", "mask,logits", "--inference-size", "1024x2048",
        "--verify-shapes", "1x64x96,3x45x70",
    ]  # fmt: skip
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    log = result.stderr
    for stage in ("load random:b0", "trace to ONNX", "verify against PyTorch (fp32)", "write ", "done in"):
        assert f"[segformer-export] {stage}" in log, log
    assert log.count("logits max-abs") == 2 and "3x45x70" in log
    meta = decode_metadata(read_metadata(out))
    assert meta["num_labels"] == 19 and meta["inference_size"] == [1024, 2048]
    assert meta["outputs"] == ["mask", "logits"]
    assert [p.name for p in out.parent.iterdir()] == ["b0.onnx"]  # no temporary file left behind


@pytest.mark.parametrize(
    "args",
    [
        ["random:b0", "--outputs", "logits"],
        ["random:b0", "--inference-size", "512"],
        ["random:b0", "--verify-shapes", "512x512"],
        ["random:b0", "--upsample", "nearest"],
    ],
)
def test_bad_arguments_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_unknown_source_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "missing"), "-o", str(tmp_path / "x.onnx")]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["random:b0", "--opset", "11", "-o", str(tmp_path / "x.onnx")]) == 2
    assert not (tmp_path / "x.onnx").exists()
