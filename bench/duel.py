"""Latency at concurrency 1, server vs raw ``session.run``, interleaved so machine drift cancels out.

``python -m bench.duel GRAPH --url http://127.0.0.1:PORT --out R.json [JPEGs]``: ``--rounds`` times,
``--seconds`` of a raw ONNX Runtime loop (same graph, same threads, pre-resized inputs, ``output_size``
= original size) then ``--seconds`` of sequential REST requests with the same photos. On a shared
machine, load from others shifts both sides of a round alike; the medians of the per-round p50s and
their difference are what the report's "p50 at c=1" row uses.
"""

from __future__ import annotations

import argparse
import http.client
import io
import statistics
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from bench.common import load_images, write_json
from bench.ortcase import inference_size, make_session
from server.imaging import resize_bilinear


def duel(graph: Path, url: str, images: list[bytes], threads: int, rounds: int, seconds: float) -> dict:
    session = make_session(graph, threads)
    size = inference_size(session)
    decoded = [Image.open(io.BytesIO(b)).convert("RGB") for b in images]
    feeds = [
        {
            "image": resize_bilinear(im, size)[None],
            "output_size": np.array([im.height, im.width], dtype=np.int64),
        }
        for im in decoded
    ]
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=120)
    raw_p50, served_p50 = [], []
    i = 0
    try:
        for _ in range(rounds + 1):  # the first round warms both sides up and is dropped
            raw, served = [], []
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                start = time.perf_counter()
                session.run(["mask"], feeds[i % len(feeds)])
                raw.append(time.perf_counter() - start)
                i += 1
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                start = time.perf_counter()
                headers = {"Content-Type": "image/jpeg"}
                conn.request("POST", "/v1/segment", body=images[i % len(images)], headers=headers)
                answer = conn.getresponse()
                payload = answer.read()
                if answer.status != 200 or not payload.startswith(b"\x89PNG"):
                    raise RuntimeError(f"HTTP {answer.status}: {payload[:200]!r}")
                served.append(time.perf_counter() - start)
                i += 1
            raw_p50.append(1000 * statistics.median(raw))
            served_p50.append(1000 * statistics.median(served))
    finally:
        conn.close()
    raw_p50, served_p50 = raw_p50[1:], served_p50[1:]
    return {
        "raw_p50_ms": statistics.median(raw_p50),
        "served_p50_ms": statistics.median(served_p50),
        "gap_ms": statistics.median(s - r for s, r in zip(served_p50, raw_p50, strict=True)),
        "rounds": [{"raw_p50_ms": r, "served_p50_ms": s} for r, s in zip(raw_p50, served_p50, strict=True)],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.duel", description=__doc__)
    parser.add_argument("graph", type=Path)
    parser.add_argument("--url", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("images", nargs="*", type=Path)
    args = parser.parse_intermixed_args(argv)
    result = duel(args.graph, args.url, load_images(args.images), args.threads, args.rounds, args.seconds)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
