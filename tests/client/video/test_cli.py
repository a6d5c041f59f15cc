"""``segformer-client video`` end to end: a real MP4 from the real photos through the live server."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import signal
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from client.cli import main
from client.frames import encode
from tests.client.video.clips import SIZE, decode, frames_from_photos, write_video
from tests.grpc.serving import ROOT, LiveServer, decode_mask

RATE, SECONDS = 8, 3


@pytest.fixture(scope="module")
def clip(real_photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "photos.mp4"
    write_video(path, frames_from_photos(real_photos, RATE * SECONDS), RATE)
    return path


def _segment_over_rest(live: LiveServer, rgb: np.ndarray) -> dict[str, object]:
    """``/v1/segment`` of the frame, sent the way the client sends it (PNG, lossless)."""
    answer = httpx.post(
        f"{live.rest_url}/v1/segment?format=json",
        content=encode(rgb, "png"),
        headers={"Content-Type": "image/png"},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def test_a_video_file_gives_every_frame_in_order(live: LiveServer, clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = ["video", str(clip), "--url", f"grpc://{live.grpc_address}", "-q"]
    outputs = ["--overlay", str(out / "overlay.mp4"), "--masks", str(out / "masks")]
    outputs += ["--mask-video", str(out / "masks.mkv"), "--stats", str(out / "stats.jsonl")]
    assert main([*command, *outputs]) == 0

    source = decode(clip)
    count = len(source)
    assert count == RATE * SECONDS
    lines = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(count))
    assert [line["time"] for line in lines] == pytest.approx([float(f.time) for f in source])
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{i:06d}.png" for i in range(count)]

    overlay = decode(out / "overlay.mp4")
    assert len(overlay) == count and {(f.width, f.height) for f in overlay} == {SIZE}
    assert [float(f.time) for f in overlay] == pytest.approx([float(f.time) for f in source])
    mask_video = decode(out / "masks.mkv")
    assert len(mask_video) == count

    for i, frame in enumerate(source):
        rgb = frame.to_ndarray(format="rgb24")
        rest = _segment_over_rest(live, rgb)
        expected = decode_mask(base64.b64decode(str(rest["mask_png_base64"])))
        mask = decode_mask((out / "masks" / f"{i:06d}.png").read_bytes())
        assert mask.shape == (SIZE[1], SIZE[0])
        assert np.array_equal(mask, expected), f"frame {i}"
        assert np.array_equal(mask_video[i].to_ndarray(format="gray"), mask), "the mask video is lossless"
        classes = [(c["id"], c["label"], c["pixels"]) for c in rest["classes"]]  # type: ignore[attr-defined]
        assert [(c["id"], c["label"], c["pixels"]) for c in lines[i]["classes"]] == classes
        assert (lines[i]["width"], lines[i]["height"]) == SIZE and lines[i]["latency_ms"] > 0


def test_a_folder_of_frames_takes_the_same_path(live: LiveServer, clip: Path, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(decode(clip)[:4]):
        Image.fromarray(frame.to_ndarray(format="rgb24")).save(folder / f"f{i}.png")
    out = tmp_path / "out"
    args = ["video", str(folder), "--url", f"grpc://{live.grpc_address}", "-q", "--rate", "2"]
    assert main([*args, "--overlay", str(out / "o.mp4"), "--masks", str(out / "m")]) == 0
    assert sorted(p.name for p in (out / "m").iterdir()) == [f"f{i}.png" for i in range(4)]
    overlay = decode(out / "o.mp4")
    assert [float(f.time) for f in overlay] == pytest.approx([0.0, 0.5, 1.0, 1.5])


def test_bad_sources_and_formats_are_errors_not_tracebacks(
    live: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    url = f"grpc://{live.grpc_address}"
    assert main(["video", str(tmp_path / "broken.mp4"), "--url", url, "-q"]) == 2
    assert "broken.mp4" in capsys.readouterr().err
    with wave.open(str(tmp_path / "sound.wav"), "wb") as wav:  # a file FFmpeg reads, with no video
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(bytes(1600))
    assert main(["video", str(tmp_path / "sound.wav"), "--url", url, "-q"]) == 2
    assert "sound.wav: no video stream in it" in capsys.readouterr().err
    folder = tmp_path / "one"
    folder.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "a.png")
    assert (
        main(["video", str(folder), "--url", url, "-q", "--format", "nope", "--outputs", str(tmp_path)]) == 2
    )
    assert "unknown format 'nope'; the formats are png, json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["video", str(folder), "--url", url, "--format", "rle", "--outputs", "o", "--masks", "m"])
    assert "need the label mask, which --format replaces" in capsys.readouterr().err


def test_a_format_of_the_servers_passes_through(live: LiveServer, clip: Path, tmp_path: Path) -> None:
    """``--format`` names any format of the server's registry: each frame's answer as the server sent it."""
    args = ["video", str(clip), "--url", f"grpc://{live.grpc_address}", "-q", "--format", "polygons"]
    assert main([*args, "--outputs", str(tmp_path / "polygons")]) == 0
    written = sorted(p.name for p in (tmp_path / "polygons").iterdir())
    assert written == [f"{i:06d}.geojson" for i in range(RATE * SECONDS)]
    first = decode(clip)[0].to_ndarray(format="rgb24")
    rest = httpx.post(
        f"{live.rest_url}/v1/segment?format=polygons",
        content=encode(first, "png"),
        headers={"Content-Type": "image/png"},
        timeout=120,
    )
    assert json.loads((tmp_path / "polygons" / "000000.geojson").read_text()) == rest.json()


def test_ctrl_c_keeps_the_files_valid(live: LiveServer, real_photos: list[Path], tmp_path: Path) -> None:
    """SIGINT mid-run (a 15 s clip replayed live): exit 0, the overlay and mask videos written so far
    decode, with one frame per JSON line."""
    clip = tmp_path / "long.mp4"
    write_video(clip, frames_from_photos(real_photos, 15 * RATE, size=(320, 240)), RATE)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "client.cli", "video", str(clip), "--url", f"grpc://{live.grpc_address}"]
    command += ["--live", "--inflight", "1", "-q", "--overlay", str(out / "o.mp4")]
    command += ["--mask-video", str(out / "m.mkv"), "--stats", str(out / "s.jsonl")]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        stats = out / "s.jsonl"
        if stats.exists() and len(stats.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert stdout.startswith("interrupted: ") and "skipped" in stdout
    lines = (out / "s.jsonl").read_text().splitlines()
    assert 3 <= len(lines) < 15 * RATE
    assert len(decode(out / "o.mp4")) == len(decode(out / "m.mkv")) == len(lines)


def test_an_http_stream_is_live_newest_frame_first(live: LiveServer, clip: Path, tmp_path: Path) -> None:
    """The clip over a local HTTP server (a real stream for FFmpeg): decoded as fast as it comes, the
    frames that came while the slots were full are skipped and counted, the rest answered in order."""
    stream = tmp_path / "photos.ts"  # MPEG-TS: readable front to back, as streams are
    write_video(stream, [f.to_ndarray(format="rgb24") for f in decode(clip)], RATE)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{httpd.server_address[1]}/{stream.name}"
        stats = tmp_path / "s.jsonl"
        args = ["video", url, "--url", f"grpc://{live.grpc_address}", "-q", "--inflight", "1"]
        code = main([*args, "--stats", str(stats)])
        httpd.shutdown()
    assert code == 0
    frames = [json.loads(line)["frame"] for line in stats.read_text().splitlines()]
    # in order; the newest frame is never dropped, so the stream's last is answered (its first may be
    # overwritten by the second before the pipeline takes one: the capture thread runs ahead)
    assert frames == sorted(set(frames)) and frames[-1] == RATE * SECONDS - 1
    assert len(frames) < RATE * SECONDS  # some were skipped
