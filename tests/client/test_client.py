"""``SegformerClient`` and the ``segformer-client`` CLI end to end against the real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from client import SegformerClient, SegmentationError
from client.cli import main
from tests.client.isolation import assert_imports_only_the_protocol
from tests.grpc.serving import ROOT, GraphReference, LiveServer, decode_mask, encode, scene


def _agree(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and float((a == b).mean()) >= 0.999


@pytest.fixture
def frames(tmp_path: Path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(12):
        fmt, suffix = ("JPEG", "jpg") if i % 3 == 0 else ("PNG", "png")
        (folder / f"frame_{i:03d}.{suffix}").write_bytes(encode(scene(120, 160, seed=500 + i), fmt))
    (folder / "frame_005b.jpg").write_bytes(b"not a jpeg at all")
    (folder / "notes.txt").write_text("not an image: skipped")
    return folder


def test_cli_streams_a_folder_over_grpc(
    live: LiveServer, reference: GraphReference, frames: Path, tmp_path: Path
) -> None:
    out = tmp_path / "masks"
    command = [
        sys.executable,
        "-m",
        "client.cli",
        "--url",
        f"grpc://{live.grpc_address}",
        str(frames),
        "-o",
        str(out),
        "--mode",
        "native",
    ]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr  # one frame is broken
    assert "12 segmented, 1 failed" in run.stdout and "over GRPC" in run.stdout
    assert "frame_005b.jpg: ERROR INVALID_ARGUMENT corrupt_image" in run.stderr
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(
        f"{p.stem}.png" for p in frames.iterdir() if p.suffix != ".txt" and p.stem != "frame_005b"
    )
    for image in frames.glob("frame_*"):
        if image.stem != "frame_005b":
            assert _agree(
                decode_mask((out / f"{image.stem}.png").read_bytes()),
                reference.mask(image.read_bytes(), "native"),
            )


def test_cli_files_over_rest_match_grpc(
    live: LiveServer, frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = sorted(frames.glob("frame_00[0-2].*"))
    assert main(["--url", live.rest_url, *map(str, files), "-o", str(tmp_path / "rest")]) == 0
    assert (
        main(["--url", f"grpc://{live.grpc_address}", "-q", *map(str, files), "-o", str(tmp_path / "grpc")])
        == 0
    )
    output = capsys.readouterr().out
    assert "3 segmented, 0 failed" in output and "over REST" in output and "120x160" not in output
    assert "160x120, " in output
    for image in files:
        rest = decode_mask((tmp_path / "rest" / f"{image.stem}.png").read_bytes())
        assert _agree(rest, decode_mask((tmp_path / "grpc" / f"{image.stem}.png").read_bytes()))


def test_cli_info_and_unreachable_server(
    live: LiveServer, capsys: pytest.CaptureFixture[str], frames: Path
) -> None:
    assert main(["--url", f"grpc://{live.grpc_address}", "--info"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "segformer-b0-random"
    image = next(frames.glob("*.png"))
    for url in ("grpc://127.0.0.1:1", "http://127.0.0.1:1"):
        assert main(["--url", url, "--timeout", "2", str(image), "-o", str(frames / "out")]) == 2
        assert "segformer-client: " in capsys.readouterr().err


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_library_segment_stream_model_ready(
    live: LiveServer, reference: GraphReference, frames: Path, transport: str
) -> None:
    url = live.rest_url if transport == "rest" else f"grpc://{live.grpc_address}"
    images = sorted(frames.glob("frame_*"))
    with SegformerClient(url, timeout=60) as client:
        assert client.transport == transport and client.ready()
        assert client.model()["num_labels"] == 150
        seg = client.segment(images[1], mode="native")
        assert (seg.width, seg.height) == (160, 120) and seg.timings["inference"] > 0
        assert _agree(seg.mask(), reference.mask(images[1].read_bytes(), mode="native"))
        assert sum(c.pixels for c in seg.classes) == 160 * 120
        with pytest.raises(SegmentationError) as caught:
            client.segment(b"garbage")
        assert caught.value.error == "corrupt_image"
        assert caught.value.code == ("400" if transport == "rest" else "INVALID_ARGUMENT")
        results = list(client.stream(images, mode="native", inflight=4))
    assert [r.frame_id for r in results] == list(range(len(images)))
    failed = [images[r.frame_id].name for r in results if not r.ok]
    assert failed == ["frame_005b.jpg"]
    for image, result in zip(images, results, strict=True):
        if result.ok:
            assert _agree(result.mask(), reference.mask(image.read_bytes(), mode="native"))


def test_imports_only_the_protocol_of_the_server() -> None:
    assert_imports_only_the_protocol("client")


def test_console_script_points_at_the_cli() -> None:
    import importlib
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["segformer-client"].partition(":")
    assert getattr(importlib.import_module(module), function) is main


def test_sixteen_bit_masks_decode_from_png_and_raw() -> None:
    from client import Segmentation
    from server.imaging import encode_mask_png

    mask = (np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 7) % 300
    png = Segmentation(width=40, height=30, mask_data=encode_mask_png(mask), dtype="uint16")
    raw = Segmentation(
        width=40, height=30, mask_data=mask.astype("<u2").tobytes(), mask_format="raw", dtype="uint16"
    )
    for seg in (png, raw):
        assert seg.mask().dtype == np.uint16 and np.array_equal(seg.mask(), mask)
    assert np.array_equal(decode_mask(raw.mask_png()), mask)
