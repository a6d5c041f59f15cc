"""What tracing costs: our server with tracing off and on (100 % sampling) side by side (docs/tracing.md).

    python -m bench.tracing --graph G.onnx --out R.json --work .cache/bench [--rounds 3 --seconds 8] PHOTOS...

Two servers run at once on the same cores, one without tracing (no exporter thread) and one exporting
every request's spans over OTLP/HTTP to a sink in this process (it accepts and counts the payloads, as
a collector would, without decoding them). The load alternates between them, ``--rounds`` times
``--seconds`` each at ``--concurrency`` REST clients, so drift from other load on the machine falls on
both alike; the medians of the rounds are reported with the on/off ratio, and the server's CPU time per
image (its process tree's CPU over the images answered), which other load on the machine disturbs less
than throughput. Then, in this process, the CPU cost of one request's spans (a server span, five
stages, attributes) with tracing off and on, export included (``span_cost``).
"""

from __future__ import annotations

import http.server
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import load_images, phase_parser, synthetic_jpegs, write_json
from bench.loadgen import run_load
from bench.servers import start_server
from server import tracing
from server.settings import Settings

STAGES = ("decode", "preprocess", "queue", "mask", "encode")


class OtlpSink:
    """``POST /v1/traces`` answered 200 with an empty ``ExportTraceServiceResponse``; counts payloads."""

    def __init__(self) -> None:
        self.payloads = 0
        self.bytes = 0
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(size)
                sink.payloads += 1
                sink.bytes += size
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def compare(
    graph: Path, work: Path, threads: int, images: list[bytes], concurrency: int, rounds: int, seconds: float
) -> dict[str, Any]:
    sink = OtlpSink()
    base = ["--runtime", "onnxruntime"]
    off = start_server(graph, work / "server-tracing-off", threads, base)
    on = start_server(graph, work / "server-tracing-on", threads, [*base, "--trace-endpoint", sink.endpoint])
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    try:
        for _ in range(rounds):
            for side, server in (("off", off), ("on", on)):
                result = run_load("rest", server.url, concurrency, seconds, 30.0, images, server.pid)
                runs[side].append(result)
    finally:
        off.stop()
        on.stop()
        sink.close()

    for run in runs["off"] + runs["on"]:
        run["cpu_ms_per_image"] = 1000 * run["cpu_cores"] / run["images_per_s"]

    def median(side: str, key: str) -> float:
        return statistics.median(float(r[key]) for r in runs[side])

    keys = ("images_per_s", "p50_ms", "p95_ms", "cpu_cores", "cpu_ms_per_image")
    summary = {side: {key: median(side, key) for key in keys} for side in runs}
    return {
        "concurrency": concurrency,
        "rounds": rounds,
        "seconds": seconds,
        "summary": summary,
        "throughput_ratio_on_off": summary["on"]["images_per_s"] / summary["off"]["images_per_s"],
        "p50_delta_ms": summary["on"]["p50_ms"] - summary["off"]["p50_ms"],
        "cpu_ratio_on_off": summary["on"]["cpu_ms_per_image"] / summary["off"]["cpu_ms_per_image"],
        "otlp_payloads": sink.payloads,
        "otlp_bytes": sink.bytes,
        "runs": runs,
    }


def _one_request(index: int) -> None:
    """The spans of one traced request, as the server makes them (a caller's traceparent, five stages)."""
    carrier = {"traceparent": f"00-{index + 1:032x}-{index + 1:016x}-01"}
    with tracing.server_span("POST /v1/segment", carrier, {"http.request.method": "POST"}):
        tracing.annotate({"segformer.model": "m", "segformer.mode": "resize", "segformer.image.width": 683})
        for stage in STAGES:
            tracing.stage(stage, 0.001)
        tracing.outcome(200)


def span_cost(endpoint: str, requests: int = 5000) -> dict[str, float]:
    """CPU microseconds per request for its spans: tracing off, then on (exported to ``endpoint``,
    the exporter thread's CPU and the final flush included)."""
    cost = {}
    for side in ("off", "on"):
        if side == "on":
            tracing.configure(Settings(model=["m"], trace_endpoint=endpoint))
        start = time.process_time()
        for index in range(requests):
            _one_request(index)
            if index % 200 == 199:  # 1,200 spans: below the export queue's 2,048 (none dropped)
                tracing.flush()
        tracing.shutdown()  # flushes what is left: its export counts
        cost[f"{side}_us"] = 1e6 * (time.process_time() - start) / requests
    return cost


def main(argv: list[str] | None = None) -> None:
    parser = phase_parser("python -m bench.tracing", __doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    images = load_images(args.photos) if args.photos else synthetic_jpegs()
    result = compare(args.graph, args.work, args.threads, images, args.concurrency, args.rounds, args.seconds)
    sink = OtlpSink()
    result["span_cost"] = span_cost(sink.endpoint)
    sink.close()
    write_json(args.out, result)
    for side, row in result["summary"].items():
        print(
            f"tracing {side:<3}: {row['images_per_s']:6.2f} img/s  p50 {row['p50_ms']:7.1f} ms"
            f"  p95 {row['p95_ms']:7.1f} ms  server CPU {row['cpu_ms_per_image']:.0f} ms per image"
        )
    print(
        f"on/off throughput {result['throughput_ratio_on_off']:.3f}, p50 {result['p50_delta_ms']:+.1f} ms, "
        f"CPU per image {result['cpu_ratio_on_off']:.3f}, "
        f"{result['otlp_payloads']} OTLP payloads ({result['otlp_bytes'] / 1024:.0f} KiB)"
    )
    cost = result["span_cost"]
    print(
        f"spans of one request: {cost['off_us']:.1f} µs CPU off, {cost['on_us']:.1f} µs on (export included)"
    )


if __name__ == "__main__":
    main()
