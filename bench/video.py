"""1080p frames through ``segformer-client``'s pipeline: one gRPC stream and four, beside the same frames
sent one by one over REST (one client and four), on one server.

    python -m bench.video --graph G.onnx --out docs/benchmarks --work .cache/bench [--frames 48] PHOTOS...

Frames: the photos panned across at 1920×1080, encoded once as PNG (what ``segformer-client video``
sends by default), so every row sends the same bytes. Streams go through ``client.pipeline`` (4 frames
in flight each, raw masks back); REST rows are ``POST /v1/segment`` one at a time per client (PNG mask).
Latency: a frame's send to its answer. Writes ``WORK/raw/video.json``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from bench.common import phase_parser, real_photos, shared_dir, write_json
from bench.servers import start_server
from client import SegformerClient
from client.frames import Frame, encode
from client.pipeline import Request, segment_frames

SIZE = (1920, 1080)


def frames_1080p(photos: list[Path], count: int) -> list[bytes]:
    """``count`` PNG frames: each photo covering 1920×1080, panned 12 px a frame (frames differ)."""
    width, height = SIZE
    out: list[bytes] = []
    rng = np.random.default_rng(0)
    for i in range(count):
        if photos:
            with Image.open(photos[i % len(photos)]) as photo:
                scale = max(width / photo.width, height / photo.height) * 1.2
                big = photo.convert("RGB").resize((round(photo.width * scale), round(photo.height * scale)))
        else:
            small = rng.integers(0, 256, (height // 64, width // 64, 3), dtype=np.uint8)
            big = Image.fromarray(small).resize((round(width * 1.2), round(height * 1.2)))
        left = min(big.width - width, 12 * i)
        out.append(encode(np.asarray(big.crop((left, 0, left + width, height))), "png"))
    return out


def _stream(url: str, frames: list[bytes], latencies: list[float]) -> None:
    def pulled() -> Iterator[Frame]:
        for index, data in enumerate(frames):
            yield Frame(index, f"{index:06d}", data=data)  # captured when pulled: a free slot

    with SegformerClient(url, timeout=300) as client:
        for frame, seg in segment_frames(client, pulled(), Request(mask_format="raw", inflight=4)):
            assert seg.ok, seg.error
            latencies.append(time.perf_counter() - frame.captured)


def _rest(url: str, frames: list[bytes], latencies: list[float]) -> None:
    with httpx.Client(base_url=url, timeout=300) as http:
        for data in frames:
            start = time.perf_counter()
            answer = http.post("/v1/segment", content=data, headers={"Content-Type": "image/png"})
            answer.raise_for_status()
            latencies.append(time.perf_counter() - start)


def measure(
    system: str,
    send: Callable[[str, list[bytes], list[float]], None],
    url: str,
    frames: list[bytes],
    clients: int,
) -> dict[str, Any]:
    """``clients`` threads, each sending its share of ``frames`` in order; fps and latency."""
    latencies: list[float] = []
    shares = [frames[i::clients] for i in range(clients)]
    threads = [threading.Thread(target=send, args=(url, share, latencies)) for share in shares]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    p50, p95 = (float(np.percentile(latencies, q) * 1000) for q in (50, 95))
    row = {"system": system, "clients": clients, "frames": len(latencies), "seconds": seconds,
           "fps": len(latencies) / seconds, "p50_ms": p50, "p95_ms": p95}  # fmt: skip
    print(
        f"[bench.video] {system:<22} {row['fps']:6.2f} fps  p50 {p50:6.0f} ms  p95 {p95:6.0f} ms", flush=True
    )
    return row


def run(graph: Path, photos: list[Path], work: Path, threads: int, count: int) -> dict[str, Any]:
    frames = frames_1080p(photos, count)
    warmup = frames[: max(2, count // 8)]
    server = start_server(graph, work / "server-video", threads, ["--runtime", "onnxruntime"])
    grpc_url = f"grpc://{server.grpc_target}"
    rows = []
    try:
        _rest(server.url, warmup, [])
        _stream(grpc_url, warmup, [])
        for system, send, url, clients in (
            ("grpc-stream x1", _stream, grpc_url, 1),
            ("rest one-by-one x1", _rest, server.url, 1),
            ("grpc-stream x4", _stream, grpc_url, 4),
            ("rest one-by-one x4", _rest, server.url, 4),
        ):
            rows.append(measure(system, send, url, frames, clients))
    finally:
        server.stop()
    result = {"size": list(SIZE), "frames": count, "threads": threads, "rows": rows}
    write_json(work / "raw" / "video.json", result)
    return result


def main(argv: list[str] | None = None) -> None:
    p = phase_parser("python -m bench.video", __doc__)
    p.add_argument("--frames", type=int, default=48)
    args = p.parse_args(argv)
    photos = args.photos or real_photos(shared_dir())
    print(json.dumps(run(args.graph, photos, args.work, args.threads, args.frames), indent=1))


if __name__ == "__main__":
    main()
