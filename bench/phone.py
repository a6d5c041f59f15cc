"""Phone-size photos: 12 Mpx JPEGs made from the real photos, beside the same scenes at their own size.

    python -m bench.phone --graph G.onnx --out docs/benchmarks --work .cache/bench \\
        [--baseline-tree DIR] [--triton-venv DIR] [--duration 10] [--rounds 2] PHOTOS...

Servers at defaults (and ours with ``--jpeg-draft``; with ``--baseline-tree`` an older commit's
server, same graph and packages, at its defaults and at ``--precision fp32``, the reference's
fidelity): closed loop, 4 clients, REST and gRPC streams, each image set in turn,
rounds interleaved (the machine is shared: ratios hold within a round). Beside them on the same files,
each round: PyTriton (``--triton-venv``: ``bench/triton_env.py``'s venv, made if missing; batching off,
its best CPU setting; the same exact decode, PIL resize, the graph's own mask, PNG) over its KServe v2
REST endpoint, and the in-process pipeline (``bench.inproc ort --output pipeline``: JPEG bytes to PNG
through the same graph, two loops side by side, no transport). Then, one request at a time, the
stages per photo from the server's own stage histograms (``/metrics``): decode, resize, inference, mask
head, encode, the rest of the client's wall time (network + HTTP) and the server's CPU per photo. Last,
the network alone in OpenVINO fp32 and bf16 (``bench.inproc ov --output logits``), and the measures
(``summary``): 12 Mpx against own size, ours against each other server, and the core-ms a 2x against
the base leaves a 12 Mpx photo. Results: ``WORK/phone.json`` and the tables in ``WORK/phone.md``
(``docs/benchmarks/PHONE.md`` is their reading).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from bench.clients import make_client
from bench.common import TreeMonitor, phase_parser, write_json
from bench.loadgen import run_load
from bench.mixed import jpeg_at
from bench.servers import OurServer, start_server
from bench.triton_env import TritonServer, ensure_venv, start_triton

PHONE = (4032, 3024)
STAGES = ("decode", "preprocess", "inference", "mask", "encode", "total")


def phone_jpegs(photos: list[Path]) -> list[bytes]:
    """Each photo enlarged to 4032x3024, JPEG quality 90."""
    rng = np.random.default_rng(0)
    return [jpeg_at(photos, index, PHONE, rng) for index in range(max(1, len(photos)))]


def _stage_sums(url: str) -> dict[str, tuple[float, float]]:
    """(sum seconds, count) per stage from the server's Prometheus stage histogram."""
    text = urllib.request.urlopen(f"{url}/metrics", timeout=30).read().decode()
    found: dict[str, list[float]] = {}
    for kind, stage, value in re.findall(
        r'segformer_stage_duration_seconds_(sum|count)\{[^}]*stage="(\w+)"[^}]*\} (\S+)', text
    ):
        entry = found.setdefault(stage, [0.0, 0.0])
        entry[0 if kind == "sum" else 1] += float(value)
    return {stage: (v[0], v[1]) for stage, v in found.items()}


def stage_table(server: OurServer, images: list[bytes], requests: int) -> dict[str, float]:
    """Mean ms per photo of each stage, one REST request at a time, and the server's CPU per photo
    (core-ms: the inference runs on every core, so its wall time is not its cost)."""
    sender, monitor = make_client("rest", server.url), TreeMonitor(server.pid)
    try:
        sender.send(images[0])  # warm
        before, start, cpu = _stage_sums(server.url), time.perf_counter(), monitor.sample()
        for index in range(requests):
            sender.send(images[index % len(images)])
        wall = (time.perf_counter() - start) / requests
        cpu = (monitor.sample() - cpu) / requests
        after = _stage_sums(server.url)
    finally:
        sender.close()
    means = {}
    for stage in STAGES:
        total, count = (after.get(stage, (0.0, 0.0))[i] - before.get(stage, (0.0, 0.0))[i] for i in (0, 1))
        means[stage] = 1000 * total / count if count else float("nan")
    means["network + HTTP"] = 1000 * wall - means["total"] - means["encode"]
    means["wall"] = 1000 * wall
    means["server core-ms"] = 1000 * cpu
    return means


def _inproc(
    args: argparse.Namespace, kind: str, out: Path, files: list[Path], *options: str
) -> dict[str, Any]:
    """One ``bench.inproc KIND`` run on ``args.graph`` in its own process (``--threads``, ``--duration``):
    its summary as a dict."""
    command = [sys.executable, "-m", "bench.inproc", kind, str(args.graph), *options]
    command += ["--threads", str(args.threads), "--duration", str(args.duration), "--out", str(out)]
    subprocess.run([*command, *map(str, files)], check=True)
    row: dict[str, Any] = json.loads(out.read_text())
    return row


def network_cost(args: argparse.Namespace, precision: str) -> dict[str, float]:
    """The network alone in OpenVINO at ``precision`` (``bench.inproc ov --output logits --static``, its
    own process, every core): what one image's inference costs, the floor under a server's core-ms."""
    out = args.work / "phone" / f"network-{precision}.json"
    row = _inproc(args, "ov", out, args.photos, "--output", "logits", "--static", "--precision", precision)
    return {"images_per_s": row["images_per_s"], "core_ms": 1000 * row["cpu_cores"] / row["images_per_s"]}


def in_process(args: argparse.Namespace, label: str, images: list[bytes]) -> dict[str, Any]:
    """``bench.inproc``'s pipeline on one image set, in its own process: its summary as a dict."""
    folder = args.work / "phone" / "files" / label.replace(" ", "_")
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index, body in enumerate(images):
        files.append(folder / f"{index:02d}.jpg")
        files[-1].write_bytes(body)
    row = _inproc(args, "ort", folder / "inproc.json", files, "--output", "pipeline", "--sessions", "2")
    row["system"] = "in process"
    return row


def run(args: argparse.Namespace) -> dict[str, Any]:
    photos = list(args.photos)
    sets = {"own size": [p.read_bytes() for p in photos], "12 Mpx": phone_jpegs(photos)}
    configs: dict[str, tuple[list[str], Path | None]] = {
        "ours": ([], None),
        "ours --jpeg-draft": (["--jpeg-draft"], None),
    }
    if args.baseline_tree is not None:  # at its defaults, and at the reference's fidelity (fp32)
        configs["base"] = ([], args.baseline_tree)
        configs["base --precision fp32"] = (["--precision", "fp32"], args.baseline_tree)
    servers: dict[str, OurServer] = {}
    triton: TritonServer | None = None
    results: dict[str, Any] = {"throughput": [], "stages": {}, "network": {}}

    def record(row: dict[str, Any], server: str, label: str, round_: int) -> None:
        row.update(server=server, images=label, round=round_ + 1)
        print(f"round {round_ + 1} {row['system']} {label} {server}: {row['images_per_s']:.2f} img/s")
        results["throughput"].append(row)

    try:
        for name, (extra, root) in configs.items():
            work = args.work / "phone" / name.replace(" ", "_")
            servers[name] = start_server(args.graph, work, args.threads, extra, *([root] if root else []))
        if args.triton_venv is not None:  # batching off (max batch 1): PyTriton's best on a CPU
            python = ensure_venv(args.triton_venv)
            triton = start_triton(python, args.graph, args.work / "phone" / "triton", args.threads, 1, 0)
        for round_ in range(args.rounds):
            for target in ("rest", "grpc-stream"):
                for label, images in sets.items():
                    for name, server in servers.items():
                        url = server.url if target == "rest" else server.grpc_target
                        record(
                            run_load(target, url, 4, args.duration, 60.0, images, server.pid),
                            name,
                            label,
                            round_,
                        )
            for label, images in sets.items():
                if triton is not None:
                    row = run_load("triton", triton.url, 4, args.duration, 60.0, images, triton.process.pid)
                    record(row, "PyTriton", label, round_)
                record(in_process(args, label, images), "in-process pipeline", label, round_)
        for name, server in servers.items():
            for label, images in sets.items():
                results["stages"][f"{name} / {label}"] = stage_table(server, images, args.requests)
    finally:
        for server in servers.values():
            server.stop()
        if triton is not None:
            triton.stop()
    if importlib.util.find_spec("openvino") is not None:  # an optional extra
        for precision in ("fp32", "bf16"):  # once the servers are gone: the cores to itself
            try:
                results["network"][precision] = network_cost(args, precision)
            except subprocess.CalledProcessError as exc:  # the load windows above stay reported
                print(f"the network alone in OpenVINO {precision} failed: {exc}", flush=True)
    results["summary"] = summary(results)
    return results


def rate(rows: list[dict[str, Any]], server: str, images: str) -> float:
    """Mean img/s of one server on one image set, over the transports and rounds (NaN: none)."""
    found = [r["images_per_s"] for r in rows if (r["server"], r["images"]) == (server, images)]
    return sum(found) / len(found) if found else float("nan")


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")  # a server that answered nothing in its windows


def summary(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The issue's measures: 12 Mpx img/s against the same scenes at their own size (ours, at defaults
    and with --jpeg-draft), ours at 12 Mpx against every other server, and the budget a 2x against the
    base leaves a 12 Mpx photo (core-ms on the cores the base used) beside the network's own cost."""
    rows = results["throughput"]
    mine = ("ours", "ours --jpeg-draft")
    own = {s: _ratio(rate(rows, s, "12 Mpx"), rate(rows, s, "own size")) for s in mine}
    others = sorted({r["server"] for r in rows} - set(own))
    against = {s: _ratio(rate(rows, "ours", "12 Mpx"), rate(rows, s, "12 Mpx")) for s in others}
    costs = {f"the network alone, OpenVINO {p}": cost["core_ms"] for p, cost in results["network"].items()}
    base = [r for r in rows if (r["server"], r["images"]) == ("base", "12 Mpx") and r["cpu_cores"]]
    if base:
        cores, speed = (sum(r[k] for r in base) / len(base) for k in ("cpu_cores", "images_per_s"))
        costs = {"a 12 Mpx photo may take for 2x base": _ratio(1000 * cores, 2 * speed), **costs}
    return {"12 Mpx / own size": own, "ours / server, 12 Mpx": against, "core-ms": costs}


def note(measures: dict[str, dict[str, float]]) -> str:
    """One line for ``make bench``'s notes."""
    own, against = measures["12 Mpx / own size"], measures["ours / server, 12 Mpx"]
    beside = ", ".join(f"{server} {value:.2f}x" for server, value in against.items()) or "nothing beside it"
    return (
        "phone-size photos (4 clients, REST and gRPC streams, mean of the rounds): 12 Mpx at "
        f"{own['ours']:.2f}x the img/s of the same scenes at their own size, {own['ours --jpeg-draft']:.2f}x "
        f"with --jpeg-draft; ours at 12 Mpx against {beside} (PHONE.md)"
    )


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| round | transport | images | server | img/s | p50 ms | server cores | server core-ms / image "
        "| peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["throughput"]:
        lines.append(
            f"| {row['round']} | {row['system']} | {row['images']} | {row['server']} "
            f"| {row['images_per_s']:.2f} | {row['p50_ms']:.0f} | {row['cpu_cores'] or 0:.2f} "
            f"| {1000 * (row['cpu_cores'] or 0) / max(row['images_per_s'], 1e-9):.0f} "
            f"| {row['peak_rss_mb'] or 0:.0f} |"
        )
    stages = results["stages"]
    columns = [*STAGES, "network + HTTP", "wall", "server core-ms"]
    lines += ["", "| server / images | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for key, means in stages.items():
        lines.append(f"| {key} | " + " | ".join(f"{means[c]:.1f}" for c in columns) + " |")
    lines += ["", "| measure | of | value |", "|---|---|---|"]
    for measure, values in results.get("summary", {}).items():
        lines += [f"| {measure} | {name} | {value:.2f} |" for name, value in values.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = phase_parser("python -m bench.phone", __doc__)
    parser.add_argument("--baseline-tree", type=Path, default=None, help="an older commit's source tree: A/B")
    parser.add_argument("--triton-venv", type=Path, default=None, help="PyTriton's venv: adds its rows")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=10, help="sequential requests for the stage table")
    args = parser.parse_args(argv)
    results = run(args)
    write_json(args.work / "phone.json", results)
    (args.work / "phone.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
