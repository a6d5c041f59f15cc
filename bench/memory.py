"""One request must not take the server's memory: issue #12's figures, on a real server at defaults.

    python -m bench.memory --graph G.onnx --work .cache/bench --out docs/benchmarks PHOTOS...

- a 36 Mpx PNG (6000×6000, ~100 KB: a few flat regions) answered as a mask PNG, an overlay and JSON:
  peak RSS of the request (``VmHWM`` reset before it) and RSS 5 s later, against the RSS before;
- three of them at once, twice: peak RSS;
- 300 images of sizes 32–1,600 px (the photos resized), one after the other: RSS after the first 50
  and after the last.
Targets: peak ≤ 1.2 GB and back within 10 % in 5 s; three at once ≤ 2 GB; the 300 flat within 10 %
after the first 50. Written to ``MEMORY.md`` in ``--out`` (and the raw numbers to the work folder).
"""

from __future__ import annotations

import argparse
import io
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.common import write_json
from bench.servers import start_server

MB = 1024 * 1024


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for {pid}")


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := the current RSS (Linux >= 4.0)


def big_png(side: int = 6000) -> bytes:
    small = np.random.default_rng(3).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(small).resize((side, side), Image.Resampling.NEAREST).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def varied(photos: list[Path], count: int, seed: int = 5) -> list[bytes]:
    """``count`` JPEGs of the photos (synthetic blobs without photos) at sizes 32–1,600 px each side."""
    rng = np.random.default_rng(seed)
    out = []
    for index in range(count):
        size = (int(rng.integers(32, 1601)), int(rng.integers(32, 1601)))  # (width, height)
        if photos:
            with Image.open(photos[index % len(photos)]) as image:
                picture = image.convert("RGB").resize(size, Image.Resampling.BILINEAR)
        else:
            small = rng.integers(0, 256, (size[1] // 16 + 2, size[0] // 16 + 2, 3), dtype=np.uint8)
            picture = Image.fromarray(small).resize(size, Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def _post(url: str, body: bytes, kind: str, fmt: str = "png") -> None:
    request = urllib.request.Request(
        f"{url}/v1/segment?format={fmt}", data=body, headers={"Content-Type": f"image/{kind}"}
    )
    with urllib.request.urlopen(request, timeout=600) as answer:
        answer.read()


def _settle(pid: int, target: float, seconds: float = 5.0) -> int:
    end = time.monotonic() + seconds
    while _status(pid, "VmRSS") > target and time.monotonic() < end:
        time.sleep(0.1)
    return _status(pid, "VmRSS")


def run(graph: Path, photos: list[Path], work: Path, out: Path, threads: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    body = big_png()
    server = start_server(graph, work / "memory", threads, ["--runtime", "onnxruntime"])
    try:
        pid = server.pid
        _post(server.url, varied(photos, 1)[0], "jpeg")  # warm paths
        before = _status(pid, "VmRSS")
        results["png_bytes"], results["before_mb"] = len(body), before / MB
        for fmt in ("png", "overlay", "json"):
            _reset_peak(pid)
            _post(server.url, body, "png", fmt)
            peak = _status(pid, "VmHWM")
            results[f"big_{fmt}"] = {"peak_mb": peak / MB, "after_5s_mb": _settle(pid, before * 1.10) / MB}
        peaks = []
        for _ in range(2):
            _reset_peak(pid)
            with ThreadPoolExecutor(3) as pool:
                list(pool.map(lambda _: _post(server.url, body, "png"), range(3)))
            peaks.append(_status(pid, "VmHWM") / MB)
        results["three_at_once_peak_mb"] = peaks
        samples = []
        for image in varied(photos, 300):
            _post(server.url, image, "jpeg")
            samples.append(_status(pid, "VmRSS") / MB)
        results["varied"] = {"after_50_mb": samples[49], "last_mb": samples[-1], "max_mb": max(samples)}
    finally:
        server.stop()
    write_json(work / "raw" / "memory.json", results)
    (out / "MEMORY.md").write_text(report(results))
    return results


def report(r: dict[str, Any]) -> str:
    before, three, v = r["before_mb"], r["three_at_once_peak_mb"], r["varied"]
    rows = []
    for fmt in ("png", "overlay", "json"):
        peak, after = r[f"big_{fmt}"]["peak_mb"], r[f"big_{fmt}"]["after_5s_mb"]
        rows.append(
            f"| 36 Mpx PNG → {fmt} | {peak:.0f} MB (≤ 1,200) | {after:.0f} MB ({after / before - 1:+.1%}) |"
        )
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    drift = v["last_mb"] / v["after_50_mb"] - 1
    return "\n".join(
        [
            "# Memory of one request (issue #12's figures)",
            "",
            f"Generated by `python -m bench.memory` (part of `make bench`) on {stamp}: the real B0 ADE20K",
            "graph, the server's defaults (ONNX Runtime), REST; RSS of the server process",
            "(`/proc/PID/status`).",
            f"RSS before the big requests: {before:.0f} MB. The 36 Mpx PNG is 6000×6000 in",
            f"{r['png_bytes'] / 1000:.0f} KB.",
            "",
            "| request | peak RSS (target) | RSS 5 s later (vs before; target ≤ +10 %) |",
            "|---|---|---|",
            *rows,
            f"| three 36 Mpx PNGs at once, twice | {three[0]:.0f} / {three[1]:.0f} MB (≤ 2,048) | — |",
            "",
            "300 images of 32–1,600 px each side (the photos resized), one after the other: RSS",
            f"{v['after_50_mb']:.0f} MB after the 50th, {v['last_mb']:.0f} MB after the last",
            f"({drift:+.1%}; target",
            f'within ±10 %), at most {v["max_mb"]:.0f} MB. How it is bounded: docs/server.md, "Memory".',
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    p.add_argument("--graph", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("photos", nargs="*", type=Path)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(report(run(args.graph, args.photos, args.work, args.out, args.threads)))


if __name__ == "__main__":
    main()
