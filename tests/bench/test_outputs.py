"""``bench.outputs``: the report has a row per registry format and the PNG path side by side (the run
itself is ``make bench``'s: a real server and a 12 Mpx photo)."""

from __future__ import annotations

from bench.outputs import SIZES, jpeg, report
from server.outputs.formats import FORMATS


def test_report_has_every_format_at_both_sizes_and_the_png_path() -> None:
    encode = [
        {"size": size, "format": name, "encode_ms": 1.5, "bytes": 12_345, "round_trip_ms_p50": 9.0}
        for size in SIZES
        for name in FORMATS.names
    ]
    payload = {
        "encode": encode,
        "png_encode": [{"size": "12 Mpx", "before_ms": 70.0, "registry_ms": 71.0, "ratio": 71 / 70}],
        "png_throughput": {"registry": [10.0, 11.0], "baseline": [10.5, 10.9]},
        "conditions": "16 cores, load average 0.2 at the end",
    }
    text = report(payload)
    for name in FORMATS.names:
        assert f"| {name} | 1.5 | 12,345 | 1.5 | 12,345 |" in text
    assert "through it 71.00 ms (1.014x)" in text and "baseline: 10.50 / 10.90 img/s" in text
    assert "16 cores, load average 0.2" in text


def test_synthetic_jpeg_without_a_photo() -> None:
    assert jpeg(None, (64, 48)).startswith(b"\xff\xd8")
