"""``bench.memory``: the report states every figure of issue #12 with its target (the run itself is
``make bench``'s: it needs a real server at defaults and minutes of RSS sampling)."""

from __future__ import annotations

from bench.memory import report, varied


def test_report_states_every_figure_and_target() -> None:
    big = {"peak_mb": 900.0, "after_5s_mb": 410.0}
    text = report(
        {
            "before_mb": 400.0,
            "png_bytes": 120_000,
            "big_png": big,
            "big_overlay": big,
            "big_json": big,
            "three_at_once_peak_mb": [1500.0, 1480.0],
            "varied": {"after_50_mb": 500.0, "last_mb": 510.0, "max_mb": 530.0},
        }
    )
    assert text.count("| 36 Mpx PNG → ") == 3 and "900 MB (≤ 1,200)" in text and "(+2.5%)" in text
    assert "1500 / 1480 MB (≤ 2,048)" in text and "(+2.0%; target" in text and "120 KB" in text


def test_varied_sizes_span_32_to_1600() -> None:
    import io

    from PIL import Image

    sizes = [Image.open(io.BytesIO(b)).size for b in varied([], 40)]
    assert min(min(s) for s in sizes) >= 32 and max(max(s) for s in sizes) <= 1600 and len(set(sizes)) == 40
