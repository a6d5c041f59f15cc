"""OpenVINO against ONNX Runtime under batching, and OpenVINO's memory over many input shapes.

    python -m bench.ovsoak --graph G.onnx --out docs/benchmarks --work .cache/bench PHOTOS...

- **batching soak**: mixed-size photos (``bench.mixed.mixed_jpegs``), 8 closed-loop REST clients,
  ``--max-batch-size 8 --sessions 1`` at the default queue delay, each runtime in fp32 in turn: mean
  batch, images/s, peak RSS and how it moves: ``rss_drift`` (the run's peak against the RSS after the
  first 20 %) and ``rss_growth`` (the later fifths' peaks against the second fifth's: ``fifth_peaks``).
- **native shapes**: OpenVINO (default settings), ``mode=native``, ``--shapes`` distinct image sizes
  one after another: RSS after the first 100 and after all of them (``docs/benchmarks`` says what
  the server must keep it under).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import phase_parser, write_json
from bench.mixed import _batches, _rss, jpeg_at, mixed_jpegs, soak
from bench.servers import start_server

SOAK_ARGS = ["--max-batch-size", "8", "--sessions", "1", "--precision", "fp32"]


def batching_soak(graph: Path, photos: list[Path], work: Path, threads: int, requests: int) -> dict[str, Any]:
    """The soak on each runtime (module doc); one dict per runtime."""
    images = mixed_jpegs(photos, requests, seed=1)
    out: dict[str, Any] = {}
    for runtime in ("onnxruntime", "openvino"):
        server = start_server(graph, work / f"ovsoak-{runtime}", threads, ["--runtime", runtime, *SOAK_ARGS])
        try:
            run = soak("rest", server.url, server.pid, images, clients=8)
            rss = run.pop("rss")
            total, count = _batches(server.url)
        finally:
            server.stop()
        early = rss[max(0, len(rss) // 5 - 1)]
        peaks = fifth_peaks(rss)
        run |= {"mean_batch": total / max(count, 1), "rss_peak_mb": max(rss) / 2**20,
                "rss_20pct_mb": early / 2**20, "rss_last_mb": rss[-1] / 2**20,
                "rss_drift": max(rss) / early - 1,
                "fifth_peaks_mb": [p / 2**20 for p in peaks],
                "rss_growth": max(peaks[1:]) / peaks[1] - 1}  # fmt: skip
        out[runtime] = run
    return out


def fifth_peaks(rss: list[int]) -> list[int]:
    """The peak RSS of each fifth of the run (by answers). ``rss_growth`` compares the later fifths'
    peaks with the second's (the first is the warm-up): a peak against peaks of windows of the same
    length, where ``rss_drift`` sets the run's peak against one sample, so it also counts how far RSS
    swings with the images in flight (the mixed sizes' decoded pixels and logits), not only growth."""
    n = len(rss)
    return [max(rss[i * n // 5 : max((i + 1) * n // 5, i * n // 5 + 1)]) for i in range(5)]


def native_shapes(graph: Path, photos: list[Path], work: Path, threads: int, shapes: int) -> dict[str, Any]:
    """OpenVINO in ``native`` mode over ``shapes`` distinct sizes (module doc)."""
    import urllib.request

    rng = np.random.default_rng(2)
    sizes = sorted({(int(w), int(h)) for w, h in rng.integers(64, 1024, (shapes * 2, 2))})[:shapes]
    rng.shuffle(sizes)  # type: ignore[arg-type]
    server = start_server(graph, work / "ovsoak-native", threads, ["--runtime", "openvino"])
    rss: list[int] = []
    errors = 0
    try:
        for index, size in enumerate(sizes):
            body = jpeg_at(photos, index, size, rng)
            request = urllib.request.Request(
                f"{server.url}/v1/segment?mode=native", body, {"Content-Type": "image/jpeg"}
            )
            try:
                urllib.request.urlopen(request, timeout=120).read()
            except OSError:
                errors += 1
            rss.append(_rss(server.pid))
    finally:
        server.stop()
    first = rss[min(99, len(rss) - 1)]
    return {"shapes": len(sizes), "errors": errors, "rss_100_mb": first / 2**20,
            "rss_peak_mb": max(rss) / 2**20, "rss_last_mb": rss[-1] / 2**20,
            "peak_over_100": max(rss) / first}  # fmt: skip


def run(
    graph: Path, photos: list[Path], work: Path, threads: int, requests: int, shapes: int
) -> dict[str, Any]:
    results = {
        "batching_soak": batching_soak(graph, photos, work, threads, requests),
        "native_shapes": native_shapes(graph, photos, work, threads, shapes),
    }
    write_json(work / "raw" / "ovsoak.json", results)
    return results


def main(argv: list[str] | None = None) -> None:
    p = phase_parser("python -m bench.ovsoak", __doc__)
    p.add_argument("--requests", type=int, default=480)
    p.add_argument("--shapes", type=int, default=800)
    args = p.parse_args(argv)
    result = run(args.graph, args.photos, args.work, args.threads, args.requests, args.shapes)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
