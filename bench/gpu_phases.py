"""The GPU bench's phases (``bench.gpu`` runs them in order) and the state they share (``Run``)."""

from __future__ import annotations

import argparse
import json
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import gpu_raw, gpu_served
from bench.common import write_json
from bench.gpu_data import load_graphs, photos


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


class Run:
    """The state one bench call shares between its phases."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = args.device
        self.deadline = time.monotonic() + args.budget_s
        self.work = args.work
        self.results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "phases": {}}
        self.graphs: dict[str, dict[str, Path]] = {}
        self.photos: list[Path] = []
        self.one_size: list[Path] = []
        self.reference: list[Any] = []
        self.server_logs: list[Path] = []

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        write_json(self.args.out / "gpu-results.json", self.results)

    def phase(self, name: str, body: Callable[[Run], Any]) -> None:
        record: dict[str, Any] = {"status": "skipped: budget spent"}
        if self.left() > 0:
            began = time.monotonic()
            print(f"[gpu] === {name} ({self.left():.0f} s left)", flush=True)
            try:
                self.results[name] = body(self)
                record = {"status": "ok"}
            except Exception as exc:
                traceback.print_exc()
                record = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:2000]}
            record["seconds"] = round(time.monotonic() - began, 1)
        self.results["phases"][name] = record
        self.save()

    def server_flags(self, extra: str = "") -> list[str]:
        return [*self.args.server_flags.split(), *extra.split()]


def prepare(run: Run) -> dict[str, Any]:
    from PIL import Image

    run.graphs = load_graphs(run.args.data, run.work)
    run.photos = photos(run.args.data)
    size = gpu_raw.scaled([(1, 512, 512, 512, 512)], run.args.scale)[0][1]
    (run.work / "one").mkdir(parents=True, exist_ok=True)
    for photo in run.photos:  # one size: the photos as size² JPEGs
        target = run.work / "one" / photo.name
        Image.open(photo).convert("RGB").resize((size, size), Image.Resampling.BILINEAR).save(
            target, quality=90
        )
        run.one_size.append(target)
    return {"graphs": {v: {p: str(g) for p, g in d.items()} for v, d in run.graphs.items()}, "one_size": size}


def _image(run: Run) -> Any:
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(run.photos[0]).convert("RGB"))


def raw_b0(run: Run) -> dict[str, Any]:
    size = gpu_raw.scaled([(1, 512, 512, 512, 512)], run.args.scale)[0][1]
    batches, seconds = _ints(run.args.raw_batches), run.args.raw_seconds
    out = {}
    for precision, graph in run.graphs["b0"].items():
        rows = gpu_raw.throughput(
            graph, run.device, _image(run), batches, seconds, ["numpy", "iobinding"], size
        )
        where = run.work / f"cudagraph-{precision}.json"
        rows += gpu_raw.cuda_graphs_in_subprocess(
            graph, run.device, run.photos[0], batches, seconds, size, where
        )
        out[precision] = rows
    return out


def _stop(run: Run, server: gpu_served.OurServer) -> None:
    server.stop()
    run.server_logs.append(server.log)


def served_ref(run: Run) -> dict[str, Any]:
    server, info = gpu_served.start(run.graphs["b0"]["fp32"], "cpu", run.work / "srv-ref", run.server_flags())
    try:
        run.reference = gpu_served.masks(server, run.photos)["rest"]
    finally:
        _stop(run, server)
    return {"info": info, "photos": [p.name for p in run.photos]}


def _loads(run: Run, server: gpu_served.OurServer, plan: list[tuple[str, str, int]], tag: str) -> list[dict]:
    rows = []
    for images, target, clients in plan:
        if run.left() <= 0:
            rows.append({"images": images, "target": target, "clients": clients, "skipped": "budget spent"})
            continue
        files = run.one_size if images == "one" else run.photos
        work = run.work / "load" / tag / images
        row = gpu_served.load(server, target, files, clients, run.args.duration, run.args.load_procs, work)
        rows.append({"images": images, **row})
    return rows


def _served(run: Run, variant: str, precision: str, plan: list[tuple[str, str, int]], check: bool) -> dict:
    graph, tag = run.graphs[variant][precision], f"{variant}-{precision}"
    server, info = gpu_served.start(graph, run.device, run.work / f"srv-{tag}", run.server_flags())
    out: dict[str, Any] = {"info": info}
    try:
        if check and run.reference:
            got = gpu_served.masks(server, run.photos)
            out["agreement_vs_cpu"] = gpu_served.agreement(got, run.reference)
            print(f"[gpu] agreement {tag}: {json.dumps(out['agreement_vs_cpu'])}", flush=True)
        elif check:
            out["agreement_note"] = "no CPU reference masks: served_ref did not run or failed"
        out["loads"] = _loads(run, server, plan, tag)
        out["server_gpu_mib"] = gpu_served.server_gpu_mib(server.pid)
    finally:
        _stop(run, server)
    return out


def served_fp16(run: Run) -> dict[str, Any]:
    """B0 fp16: every transport x image set x client count."""
    clients = _ints(run.args.clients)
    plan = [(i, t, c) for i in ("one", "mixed") for t in ("grpc-stream", "rest") for c in clients]
    return _served(run, "b0", "fp16", plan, check=True)


def served_fp32(run: Run) -> dict[str, Any]:
    """B0 fp32: both transports on one size, gRPC streaming on mixed sizes at the most clients."""
    clients = _ints(run.args.clients_fp32)
    plan = [("one", t, c) for t in ("grpc-stream", "rest") for c in clients]
    return _served(run, "b0", "fp32", [*plan, ("mixed", "grpc-stream", clients[-1])], check=True)


def b5_served(run: Run) -> dict[str, Any]:
    plan = [("one", "grpc-stream", c) for c in _ints(run.args.b5_clients)]
    return _served(run, "b5", "fp16", plan, check=False)


def b5_raw(run: Run) -> dict[str, Any]:
    size = gpu_raw.scaled([(1, 512, 512, 512, 512)], run.args.scale)[0][1]
    a = run.args
    return {
        p: gpu_raw.throughput(g, run.device, _image(run), _ints(a.b5_batches), a.raw_seconds, ["numpy"], size)
        for p, g in run.graphs["b5"].items()
    }


def memory(run: Run) -> list[dict[str, Any]]:
    graph, a = run.graphs["b0"]["fp32"], run.args
    return [
        gpu_raw.memory_in_subprocess(
            graph, run.device, arena, a.memory_rounds, run.work / f"mem-{arena}.json", a.scale
        )
        for arena in ("kSameAsRequested", "kNextPowerOfTwo")
    ]


def first_runs(run: Run) -> list[dict[str, Any]]:
    graph = run.graphs["b0"]["fp32"]
    return [
        gpu_raw.first_runs(graph, run.device, _image(run), algo, run.args.scale)
        for algo in ("HEURISTIC", "EXHAUSTIVE")
    ]


def tune(run: Run) -> list[dict[str, Any]]:
    rows = []
    clients = _ints(run.args.clients)[-1]
    for variant in filter(None, run.args.tune.split(";")):
        if run.left() <= 0:
            rows.append({"variant": variant, "skipped": "budget spent"})
            continue
        name, flags = variant.split(":", 1)
        graph = run.graphs["b0"]["fp16"]
        server, info = gpu_served.start(
            graph, run.device, run.work / f"srv-tune-{name}", run.server_flags(flags)
        )
        try:
            row = gpu_served.load(
                server,
                "grpc-stream",
                run.one_size,
                clients,
                run.args.duration,
                run.args.load_procs,
                run.work / "load" / f"tune-{name}",
            )
        finally:
            _stop(run, server)
        rows.append({"variant": name, "flags": flags, "batching": info["batching"], **row})
    return rows


PHASES: list[tuple[str, Callable[[Run], Any]]] = [
    ("prepare", prepare),
    ("raw_b0", raw_b0),
    ("served_ref", served_ref),
    ("served_fp16", served_fp16),
    ("served_fp32", served_fp32),
    ("b5_raw", b5_raw),
    ("b5_served", b5_served),
    ("memory", memory),
    ("first_runs", first_runs),
    ("tune", tune),
]
