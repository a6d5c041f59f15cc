"""``SegformerClient`` and the ``segformer-client`` CLI end to end against the real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
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
    url = live.client_url(transport)
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


def test_the_readme_form_url_first_and_messages_keep_the_url(
    live: LiveServer, frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"grpc://{live.grpc_address}"
    assert main([url, str(frames), "-o", str(tmp_path / "masks"), "-q"]) == 1  # one broken frame
    assert "12 segmented, 1 failed" in capsys.readouterr().out
    image = next(frames.glob("*.png"))
    assert main(["grpc://127.0.0.1:1", "--timeout", "2", str(image), "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "segformer-client: grpc://127.0.0.1:1: UNAVAILABLE" in err and "grpc:/127" not in err
    with pytest.raises(SystemExit):
        main([url, str(tmp_path / "missing.png")])
    assert f"not found: {tmp_path / 'missing.png'}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([url, "--url", url, str(image)])
    assert "two server URLs" in capsys.readouterr().err


def test_info_over_grpc_is_the_rest_body(live: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    rest = httpx.get(f"{live.rest_url}/v1/model", timeout=30).json()
    assert main([f"grpc://{live.grpc_address}", "--info"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == rest and list(printed) == list(rest)  # the same keys in the same order
    assert isinstance(printed["num_labels"], int) and isinstance(printed["version"], int)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_named_model(
    live: LiveServer, frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], transport: str
) -> None:
    url = live.client_url(transport)
    image = str(next(frames.glob("*.png")))
    assert main([url, "--model", "segformer-b0-random", image, "-o", str(tmp_path), "-q"]) == 0
    assert "1 segmented, 0 failed" in capsys.readouterr().out
    assert main([url, "--model", "nope", image, "-o", str(tmp_path)]) == 2
    assert ("404" if transport == "rest" else "NOT_FOUND") in capsys.readouterr().err


def _rest_answer(live: LiveServer, image: Path, query: str) -> httpx.Response:
    """The server's own REST answer for ``image`` with ``query``: what the client must write the same."""
    png = {"Content-Type": "image/png"}
    answer = httpx.post(
        f"{live.rest_url}/v1/segment?{query}", content=image.read_bytes(), headers=png, timeout=60
    )
    assert answer.status_code == 200, answer.text
    return answer


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_format_of_the_servers_by_name(
    live: LiveServer, frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], transport: str
) -> None:
    url = live.client_url(transport)
    image = next(frames.glob("*.png"))
    assert main([url, "--format", "rle", str(image), "-o", str(tmp_path)]) == 0
    assert "rle, " in capsys.readouterr().out
    rest = _rest_answer(live, image, "format=rle")
    assert (tmp_path / f"{image.stem}.rle.json").read_bytes() == rest.content
    assert main([url, "--format", "nope", str(image), "-o", str(tmp_path)]) == 2
    assert "unknown format 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_format_parameters_reach_the_server(
    live: LiveServer, frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], transport: str
) -> None:
    """``--classes``, ``--tolerance`` and ``--min-area`` give what REST gives for the same query."""
    url = live.client_url(transport)
    image = next(frames.glob("*.png"))
    chosen = str(_rest_answer(live, image, "format=rle").json()["classes"][0]["id"])
    rest = _rest_answer(live, image, f"format=polygons&classes={chosen}&tolerance=1.5&min_area=4")
    args = [url, "--format", "polygons", "--classes", chosen, "--tolerance", "1.5", "--min-area", "4"]
    assert main([*args, str(image), "-o", str(tmp_path)]) == 0
    assert (tmp_path / f"{image.stem}.geojson").read_bytes() == rest.content
    assert main([url, "--classes", "no-such-class", str(image), "-o", str(tmp_path)]) == 2
    assert "no-such-class" in capsys.readouterr().err
