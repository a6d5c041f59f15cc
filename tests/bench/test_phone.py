"""``bench.phone``: the 12 Mpx images and the report tables (the run is ``python -m bench.phone``)."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from bench.phone import PHONE, STAGES, markdown, phone_jpegs


def test_phone_jpegs_are_12_mpx_photos(tmp_path: Path) -> None:
    photo = tmp_path / "scene.jpg"
    Image.new("RGB", (683, 512), (30, 120, 200)).save(photo)
    (data,) = phone_jpegs([photo])
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == PHONE == (4032, 3024) and image.format == "JPEG"


def test_report_has_a_row_per_window_and_a_stage_table() -> None:
    row = {"round": 1, "system": "rest", "images": "12 Mpx", "server": "ours", "images_per_s": 0.5}
    row |= {"p50_ms": 2000.0, "cpu_cores": 0.25, "peak_rss_mb": 650.0}
    stages = {name: 10.0 for name in (*STAGES, "network + HTTP", "wall")}
    text = markdown({"throughput": [row], "stages": {"ours / 12 Mpx": stages}})
    assert "| 1 | rest | 12 Mpx | ours | 0.50 | 2000 | 0.25 | 500 | 650 |" in text  # 500 core-ms / image
    assert "| ours / 12 Mpx | 10.0 |" in text
