"""Mixed-size traffic: throughput over REST and gRPC streams (ours, PyTriton), the batching soak, and
the server's RSS over 1,000 mixed-size requests at defaults (``docs/benchmarks/rss_over_requests.png``).

    python -m bench.mixed --graph G.onnx --out docs/benchmarks --work .cache/bench PHOTOS...

Images: the photos resized to random sizes 0.3–2.5× of 683×512 (phone photos and cameras mix), JPEG.
"""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.clients import make_client
from bench.common import phase_parser, write_json
from bench.servers import start_server


def mixed_jpegs(photos: list[Path], count: int, seed: int = 0) -> list[bytes]:
    """``count`` JPEGs of the photos at random sizes 0.3–2.5× of 683×512 (synthetic when no photos)."""
    rng = np.random.default_rng(seed)
    out = []
    for index in range(count):
        scale = rng.uniform(0.3, 2.5)
        size = (max(32, round(683 * scale * rng.uniform(0.8, 1.2))), max(32, round(512 * scale)))
        out.append(jpeg_at(photos, index, size, rng))
    return out


def jpeg_at(photos: list[Path], index: int, size: tuple[int, int], rng: np.random.Generator) -> bytes:
    """Photo ``index`` (cycling) resized to ``size`` = (width, height) as a JPEG; smooth random blobs
    drawn from ``rng`` when there are no photos."""
    if photos:
        with Image.open(photos[index % len(photos)]) as image:
            picture = image.convert("RGB").resize(size, Image.Resampling.BILINEAR)
    else:
        small = rng.integers(0, 256, (size[1] // 16 + 1, size[0] // 16 + 1, 3), dtype=np.uint8)
        picture = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def soak(target: str, url: str, pid: int, images: list[bytes], clients: int) -> dict[str, Any]:
    """Every image once, ``clients`` closed-loop clients; the server's RSS after each answer."""
    lock, rss, errors = threading.Lock(), [], [0]
    queue = list(range(len(images)))

    def worker() -> None:
        sender = make_client(target, url)
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    index = queue.pop(0)
                try:
                    sender.send(images[index])
                except Exception:
                    with lock:
                        errors[0] += 1
                with lock:
                    rss.append(_rss(pid))
        finally:
            sender.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    return {"requests": len(images), "errors": errors[0], "seconds": seconds,
            "images_per_s": len(images) / seconds, "rss": rss}  # fmt: skip


def rss_plot(rss: list[int], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(range(1, len(rss) + 1), [r / 2**20 for r in rss], color="tab:green", lw=1.2)
    ax.axhline(600, color="grey", ls="--", lw=0.8, label="target 600 MB")
    ax.set_xlabel("requests answered (mixed sizes 0.3–2.5× of 683×512, REST, 4 clients, defaults)")
    ax.set_ylabel("server RSS (MB)")
    ax.set_ylim(0, max(700, max(rss) / 2**20 * 1.1))
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _batches(url: str) -> tuple[float, float]:
    import urllib.request

    text = urllib.request.urlopen(f"{url}/metrics", timeout=30).read().decode()
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("segformer_batch_size_sum"):
            total += float(line.split()[-1])
        elif line.startswith("segformer_batch_size_count"):
            count += float(line.split()[-1])
    return total, count


def run(
    graph: Path, photos: list[Path], work: Path, out: Path, threads: int, requests: int
) -> dict[str, Any]:
    images = mixed_jpegs(photos, requests)
    results: dict[str, Any] = {}
    server = start_server(graph, work / "mixed", threads, ["--runtime", "onnxruntime"])  # defaults, ORT
    try:
        memory = soak("rest", server.url, server.pid, images, clients=4)
        rss = memory.pop("rss")
        memory |= {"rss_peak_mb": max(rss) / 2**20, "rss_200_mb": rss[min(199, len(rss) - 1)] / 2**20,
                   "rss_last_mb": rss[-1] / 2**20}  # fmt: skip
        memory["rss_drift"] = rss[-1] / rss[min(199, len(rss) - 1)] - 1
        results["rest-defaults"] = memory
        results["plot"] = str(rss_plot(rss, out / "rss_over_requests.png"))
        grpc = soak("grpc-stream", server.grpc_target, server.pid, images[:200], clients=4)
        grpc.pop("rss")
        results["grpc-stream-defaults"] = grpc
    finally:
        server.stop()
    soak_args = ["--runtime", "onnxruntime", "--max-batch-size", "8", "--sessions", "1"]
    soak_args += ["--max-queue-delay-ms", "1000"]  # as tests/server/test_mixed.py
    batching = start_server(graph, work / "mixed-b8", threads, soak_args)
    try:
        run_ = soak("rest", batching.url, batching.pid, images[:240], clients=8)
        run_.pop("rss")
        total, count = _batches(batching.url)
        run_["mean_batch"] = total / max(count, 1)
        results["rest-b8-one-session"] = run_
    finally:
        batching.stop()
    write_json(work / "raw" / "mixed.json", results)
    return results


def main(argv: list[str] | None = None) -> None:
    p = phase_parser("python -m bench.mixed", __doc__)
    p.add_argument("--requests", type=int, default=1000)
    args = p.parse_args(argv)
    print(
        json.dumps(run(args.graph, args.photos, args.work, args.out, args.threads, args.requests), indent=1)
    )


if __name__ == "__main__":
    main()
