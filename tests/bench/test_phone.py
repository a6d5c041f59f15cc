"""``bench.phone``: the 12 Mpx images and the report tables (the run is ``python -m bench.phone``)."""

from __future__ import annotations

import io
import math
from pathlib import Path

from PIL import Image

from bench.phone import PHONE, STAGES, markdown, note, phone_jpegs, summary


def test_phone_jpegs_are_12_mpx_photos(tmp_path: Path) -> None:
    photo = tmp_path / "scene.jpg"
    Image.new("RGB", (683, 512), (30, 120, 200)).save(photo)
    (data,) = phone_jpegs([photo])
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == PHONE == (4032, 3024) and image.format == "JPEG"


def test_report_has_a_row_per_window_and_a_stage_table() -> None:
    row = {"round": 1, "system": "rest", "images": "12 Mpx", "server": "ours", "images_per_s": 0.5}
    row |= {"p50_ms": 2000.0, "cpu_cores": 0.25, "peak_rss_mb": 650.0}
    stages = {name: 10.0 for name in (*STAGES, "network + HTTP", "wall", "server core-ms")}
    text = markdown({"throughput": [row], "stages": {"ours / 12 Mpx": stages}})
    assert "| 1 | rest | 12 Mpx | ours | 0.50 | 2000 | 0.25 | 500 | 650 |" in text  # 500 core-ms / image
    assert "| ours / 12 Mpx | 10.0 |" in text


def _row(server: str, images: str, rate: float, cores: float = 1.9) -> dict[str, object]:
    return {"server": server, "images": images, "images_per_s": rate, "cpu_cores": cores}


def test_summary_has_the_issues_measures_and_the_budget() -> None:
    rows = [_row("ours", "own size", 10.0), _row("ours", "own size", 12.0), _row("ours", "12 Mpx", 6.6)]
    rows += [_row("ours --jpeg-draft", "own size", 12.0), _row("ours --jpeg-draft", "12 Mpx", 9.0)]
    rows += [_row("base", "12 Mpx", 5.0, cores=2.0), _row("base --precision fp32", "12 Mpx", 4.0)]
    network = {"fp32": {"images_per_s": 14.0, "core_ms": 140.0}}
    found = summary({"throughput": rows, "network": network})
    assert found["12 Mpx / own size"] == {"ours": 6.6 / 11.0, "ours --jpeg-draft": 0.75}
    assert found["ours / server, 12 Mpx"] == {"base": 6.6 / 5.0, "base --precision fp32": 6.6 / 4.0}
    assert found["core-ms"] == {
        "a 12 Mpx photo may take for 2x base": 200.0,  # 2 cores at 10 img/s
        "the network alone, OpenVINO fp32": 140.0,
    }
    text = markdown({"throughput": [], "stages": {}, "summary": found})
    assert "| ours / server, 12 Mpx | base | 1.32 |" in text
    assert "base 1.32x, base --precision fp32 1.65x (PHONE.md)" in note(found)


def test_summary_of_a_server_that_answered_nothing_is_nan() -> None:
    rows = [_row("ours", "own size", 10.0), _row("ours", "12 Mpx", 6.0), _row("base", "12 Mpx", 0.0, 0.0)]
    rows += [_row("ours --jpeg-draft", "own size", 0.0), _row("ours --jpeg-draft", "12 Mpx", 0.0)]
    found = summary({"throughput": rows, "network": {}})
    assert math.isnan(found["ours / server, 12 Mpx"]["base"])
    assert math.isnan(found["12 Mpx / own size"]["ours --jpeg-draft"])
    assert found["core-ms"] == {}  # no base row with a CPU reading, no network measured
