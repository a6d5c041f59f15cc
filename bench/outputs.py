"""What each output format costs (issue #25): server-side encode time per image at 0.35 and 12 Mpx, and
the PNG path's throughput beside a baseline server (the same graph, the code before the registry).

    python -m bench.outputs --graph G.onnx --out docs/benchmarks --work .cache/bench \\
        [--baseline-tree DIR] [--repeats 5] [--seconds 20] PHOTOS...

Encode cost: the server's own ``segformer_stage_duration_seconds{stage="encode"}`` histogram, its sum
and count read from ``/metrics`` before and after ``repeats`` sequential requests per format (so no
network or client time is in it). ``confidence``/``probability`` also keep the logits, which the data
plane would otherwise drop; that costs no time. PNG throughput: closed-loop clients sending the
0.35 Mpx JPEG for ``seconds`` to this checkout's server and to ``--baseline-tree``'s (a source tree of an
older commit, e.g. ``git archive main | tar -x -C DIR``), alternating A, B, A, B.
"""

from __future__ import annotations

import io
import os
import re
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from bench.common import phase_parser, write_json
from bench.servers import OurServer, start_server
from contract.spec import ModelSpec
from server import imaging
from server.outputs.base import options
from server.outputs.formats import FORMATS
from server.types import SegmentResult

JPEG = {"Content-Type": "image/jpeg"}
SIZES = {"0.35 Mpx": (683, 512), "12 Mpx": (4000, 3000)}
_SERIES = re.compile(r"segformer_stage_duration_seconds_(sum|count)\{")


def jpeg(photo: Path | None, size: tuple[int, int]) -> bytes:
    if photo is None:
        rng = np.random.default_rng(0)
        small = rng.integers(0, 256, (size[1] // 16 + 1, size[0] // 16 + 1, 3), dtype=np.uint8)
        picture = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
    else:
        with Image.open(photo) as image:
            picture = image.convert("RGB").resize(size, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _encode_seconds(url: str) -> tuple[float, float]:
    """The server's encode-stage histogram: (sum of seconds, count), over its models."""
    found = {"sum": 0.0, "count": 0.0}
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        match = _SERIES.match(line)
        if match and 'stage="encode"' in line:
            found[match.group(1)] += float(line.rsplit(" ", 1)[1])
    return found["sum"], found["count"]


def encode_costs(url: str, images: dict[str, bytes], repeats: int) -> list[dict[str, Any]]:
    """ms per image of the server's encode stage, per format and size."""
    rows = []
    for size, body in images.items():
        first = httpx.post(
            f"{url}/v1/segment", content=body, params={"format": "json"}, headers=JPEG, timeout=600
        )
        first.raise_for_status()
        top = ",".join(str(c["id"]) for c in sorted(first.json()["classes"], key=lambda c: -c["pixels"])[:3])
        for name in FORMATS.names:
            params = {"format": name} | ({"classes": top} if name == "probability" else {})
            before, count_before = _encode_seconds(url)
            total = []
            for _ in range(repeats):
                start = time.perf_counter()
                answer = httpx.post(
                    f"{url}/v1/segment", content=body, params=params, headers=JPEG, timeout=600
                )
                total.append(time.perf_counter() - start)
                answer.raise_for_status()
            after, count_after = _encode_seconds(url)
            encode_ms = 1000 * (after - before) / max(1.0, count_after - count_before)
            rows.append({
                "size": size, "format": name, "encode_ms": encode_ms, "bytes": len(answer.content),
                "round_trip_ms_p50": 1000 * float(np.median(total)),
            })  # fmt: skip
            print(f"{size:9} {name:12} encode {encode_ms:8.1f} ms  {len(answer.content):>10} B", flush=True)
    return rows


def _spec(graph: Path) -> ModelSpec:
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    image = next(i for i in model.graph.input if i.name == "image")
    shape = [d.dim_value or d.dim_param for d in image.type.tensor_type.shape.dim]
    return ModelSpec.from_graph(meta, shape)


def png_encode_side_by_side(
    url: str, graph: Path, images: dict[str, bytes], rounds: int
) -> list[dict[str, Any]]:
    """The PNG path's encode in this process, interleaved: before the registry (``encode_mask_png`` of
    the mask) and through it (``FORMATS.get("png").encode``), on the server's mask of each image."""
    spec = _spec(graph)

    rows = []
    for size, body in images.items():
        raw = httpx.post(
            f"{url}/v1/segment", content=body, params={"format": "raw"}, headers=JPEG, timeout=600
        )
        height, width = (int(v) for v in raw.headers["X-Segformer-Shape"].split(","))
        mask = np.frombuffer(raw.content, raw.headers["X-Segformer-Dtype"]).reshape(height, width)
        palette = np.zeros((spec.num_labels, 3), np.uint8)
        result = SegmentResult(mask, width, height, spec, spec.name, palette)
        png, chosen = FORMATS.get("png"), options()
        before, through = [], []
        for _ in range(rounds):
            start = time.perf_counter()
            imaging.encode_mask_png(mask)
            middle = time.perf_counter()
            png.encode(result, chosen)
            before.append(middle - start)
            through.append(time.perf_counter() - middle)
        a, b = 1000 * float(np.median(before)), 1000 * float(np.median(through))
        rows.append({"size": size, "before_ms": a, "registry_ms": b, "ratio": b / a})
        print(f"{size:9} PNG encode: before {a:.2f} ms, registry {b:.2f} ms ({b / a:.3f}x)", flush=True)
    return rows


def png_throughput(url: str, body: bytes, seconds: float, clients: int) -> float:
    """Images per second of ``clients`` closed-loop clients on the PNG path."""
    done, stop = [0], time.monotonic() + seconds
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(timeout=120) as client:
            while time.monotonic() < stop:
                client.post(f"{url}/v1/segment", content=body, headers=JPEG).raise_for_status()
                with lock:
                    done[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0] / (time.monotonic() - start)


def report(payload: dict[str, Any]) -> str:
    """``OUTPUTS.md``: the encode table per format and size, and the PNG path side by side."""
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for row in payload["encode"]:
        rows.setdefault(row["format"], {})[row["size"]] = row
    sizes = list(SIZES)
    lines = [
        "# What each output format costs",
        "",
        "Written by `python -m bench.outputs` (`make bench`'s output-format phase; the method is in its",
        f"docstring). Conditions: {payload.get('conditions', 'not recorded')}. The photo resized to",
        "683 x 512 (0.35 Mpx) and 4000 x 3000 (12 Mpx), `mode=resize`. **Encode** is the server's own",
        '`segformer_stage_duration_seconds{stage="encode"}` per image: the format\'s work after the mask.',
        "",
        "| format | " + " | ".join(f"encode, {s} (ms) | bytes, {s}" for s in sizes) + " |",
        "|---|" + "---:|---:|" * len(sizes),
    ]
    for name, by_size in rows.items():
        cells = [f"{by_size[s]['encode_ms']:.1f} | {by_size[s]['bytes']:,}" for s in sizes if s in by_size]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## The PNG path, side by side", ""]
    for row in payload.get("png_encode", []):
        lines.append(
            f"- in process, interleaved, {row['size']}: before the registry {row['before_ms']:.2f} ms, "
            f"through it {row['registry_ms']:.2f} ms ({row['ratio']:.3f}x)"
        )
    for name, rates in payload.get("png_throughput", {}).items():
        shown = " / ".join(f"{r:.2f}" for r in rates)
        lines.append(f"- end to end, closed loop, 0.35 Mpx, {name}: {shown} img/s (alternating windows)")
    rates = payload.get("png_throughput", {})
    if rates.get("registry") and rates.get("baseline"):
        ratio = statistics.median(rates["registry"]) / statistics.median(rates["baseline"])
        verdict = "met" if abs(ratio - 1) <= 0.03 else "**not met**"
        lines.append(f"- median against median: {ratio:.3f}x the baseline (target 1 ± 0.03: {verdict})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = phase_parser("bench.outputs", __doc__)
    p.add_argument("--baseline-tree", type=Path, help="a source tree of the code before the registry")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--rounds", type=int, default=30, help="interleaved PNG encodes per size, in process")
    p.add_argument("--windows", type=int, default=6, help="closed-loop windows per server, alternating")
    args = p.parse_args(argv)
    photo = args.photos[0] if args.photos else None
    images = {name: jpeg(photo, size) for name, size in SIZES.items()}
    servers: dict[str, OurServer] = {}
    try:
        servers["registry"] = start_server(
            args.graph, args.work / "outputs", args.threads, ["--runtime", "onnxruntime"]
        )
        rows = encode_costs(servers["registry"].url, images, args.repeats)
        side_by_side = png_encode_side_by_side(servers["registry"].url, args.graph, images, args.rounds)
        throughput: dict[str, list[float]] = {"registry": []}
        if args.baseline_tree:
            servers["baseline"] = start_server(
                args.graph, args.work / "outputs-baseline", args.threads, ["--runtime", "onnxruntime"],
                root=args.baseline_tree,
            )  # fmt: skip
            throughput["baseline"] = []
        for window in range(args.windows):  # alternating (A B, B A, ...): drift hits both alike
            for name in list(throughput)[:: 1 if window % 2 == 0 else -1]:
                rate = png_throughput(servers[name].url, images["0.35 Mpx"], args.seconds, args.clients)
                throughput[name].append(rate)
                print(f"PNG path {name}: {rate:.2f} img/s", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    payload = {"encode": rows, "png_encode": side_by_side, "png_throughput": throughput}
    payload["conditions"] = f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end"
    write_json(args.work / "raw" / "outputs.json", payload)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "OUTPUTS.md").write_text(report(payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
