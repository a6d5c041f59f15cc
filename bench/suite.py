"""The whole benchmark run: export, in-process baselines, our server, PyTriton; one result list.

Every measurement runs in its own process (load generator, baselines, servers), one after the other,
so no two ever share the cores. Results accumulate in ``WORK/results.json`` as they come in.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import mixed
from bench import perf_analyzer as pa
from bench.common import load_images, write_json
from bench.phone import note as phone_note
from bench.servers import ROOT, export_graph, start_server
from bench.triton_env import ACCESS_HEADER, ensure_venv, start_triton

# PyTriton as the anchor ran it (Triton's dynamic batcher, max batch 4, 10 ms queue delay), and
# with batching off, its best setting on a CPU (batches are slower per image there: see ort-mask-b4)
TRITON_CONFIGS = [("pytriton", 4, 10_000), ("pytriton-b1", 1, 0)]


@dataclass
class Plan:
    model: str  # export source: weights folder, hub id or random:b0
    hf_source: str  # the same weights for the transformers baseline (random:b0 without weights)
    images: list[Path]  # real JPEGs (empty: synthetic)
    work: Path  # scratch: graphs, logs, raw results (gitignored)
    threads: int = 2
    concurrency: list[int] = field(default_factory=lambda: [1, 4, 16, 64])
    transports: list[str] = field(default_factory=lambda: ["rest", "grpc"])
    duration: float = 10.0
    baseline_duration: float = 8.0
    triton: bool = False
    triton_venv: Path = ROOT / ".cache" / "pytriton-venv"
    upsample: str = "topk"  # the served graph's upsample mode (the exporter's default)
    compare: bool = True  # also measure the other upsample mode (raw ORT + REST at the first 2 levels)
    hf: bool = True
    openvino: bool = True  # raw OpenVINO bf16 rows and our server on OpenVINO (needs the openvino extra)
    fresh: bool = False
    server_args: list[str] = field(default_factory=list)
    baseline_tree: Path | None = None  # an older commit's source tree: the outputs and phone A/Bs
    notes: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    duel: dict[str, Any] | None = None  # c=1 latency, server vs session.run interleaved (bench.duel)
    perf_analyzer: bool = True  # also measure with Triton's perf_analyzer over the v2 protocol
    mixed: dict[str, Any] | None = None  # bench.mixed: RSS over mixed-size requests, the batching soak
    video: dict[str, Any] | None = None  # bench.video: 1080p frames, gRPC streams vs REST one by one
    video_frames: int = 48
    out: Path = ROOT / "docs" / "benchmarks"  # report + plots

    def record(self, result: dict[str, Any]) -> None:
        self.results.append(result)
        print(
            f"[bench] {result['system']:<18} c={result['concurrency']:<3} {result['images_per_s']:6.2f} img/s"
            f"  p50 {result['p50_ms']:7.0f} ms  p99 {result['p99_ms']:7.0f} ms"
            f"  errors {result.get('errors', 0)}",
            flush=True,
        )
        self.save()

    def save(self) -> None:
        payload = {"results": self.results, "duel": self.duel, "notes": self.notes, "mixed": self.mixed}
        payload["video"] = self.video
        write_json(self.work / "results.json", payload)


def _python(module: str, *args: str) -> None:
    subprocess.run([sys.executable, "-m", module, *args], check=True, cwd=ROOT)


def inproc(
    plan: Plan,
    kind: str,
    source: str,
    system: str,
    output: str = "mask",
    batch: int = 1,
    sessions: int = 1,
    extra: tuple[str, ...] = (),
) -> None:
    out = plan.work / "raw" / f"{system}.json"
    args = [kind, source, "--output", output, "--batch", str(batch), "--threads", str(plan.threads), *extra]
    args += ["--sessions", str(sessions)]
    args += ["--duration", str(plan.baseline_duration), "--system", system, "--out", str(out)]
    _python("bench.inproc", *args, *map(str, plan.images))
    plan.record(json.loads(out.read_text()))


def load(
    plan: Plan,
    target: str,
    url: str,
    pid: int,
    system: str,
    concurrency: int,
    images: list[Path] | None = None,
) -> None:
    out = plan.work / "raw" / f"{system}-c{concurrency}.json"
    args = ["--target", target, "--url", url, "--concurrency", str(concurrency), "--pid", str(pid)]
    args += ["--duration", str(plan.duration), "--max-warmup", "60", "--out", str(out)]
    _python("bench.loadgen", *args, *map(str, plan.images if images is None else images))
    result = json.loads(out.read_text())
    result["system"] = system
    plan.record(result)


def _export(plan: Plan, name: str, upsample: str, outputs: str = "mask") -> Path:
    path = plan.work / "graphs" / f"{name}.onnx"
    return export_graph(plan.model, path, outputs=outputs, upsample=upsample, fresh=plan.fresh)


def graphs(plan: Plan) -> dict[str, Path]:
    """``main``: the served graph (``--upsample plan.upsample``); ``logits``: the same with logits, for
    the logits-only ceiling; ``compare``: the other upsample mode, for the full vs top-K comparison."""
    try:
        main = _export(plan, f"mask-{plan.upsample}", plan.upsample)
    except subprocess.CalledProcessError:
        if plan.upsample == "full":
            raise
        plan.notes.append(f"the exporter has no `--upsample {plan.upsample}`: measured the full upsample")
        plan.upsample, plan.compare = "full", False
        main = _export(plan, "mask-full", "full")
    out = {"main": main, "logits": _export(plan, f"logits-{plan.upsample}", plan.upsample, "mask,logits")}
    if plan.compare:
        other = "full" if plan.upsample == "topk" else "topk"
        with phase(plan, f"export --upsample {other}"):
            out["compare"] = _export(plan, f"mask-{other}", other)
    return out


@contextlib.contextmanager
def phase(plan: Plan, name: str) -> Iterator[None]:
    """Run one phase; a failure is recorded in the report's notes and the run goes on."""
    try:
        yield
    except Exception as exc:  # one broken phase must not cost the whole run
        plan.notes.append(f"{name} failed: {type(exc).__name__}: {str(exc)[-300:]}")
        print(f"[bench] {name} FAILED: {exc}", flush=True)


def serve_phase(
    plan: Plan, graph: Path, suffix: str = "", runtime: str = "onnxruntime", precision: str = "auto"
) -> None:
    """Our server on ``runtime``: the duel, then every transport and level; ``suffix``: REST at the first
    two levels (the other upsample mode); ``runtime="openvino"``: ``ours-ov-rest`` at every level (the
    default precision), or ``ours-ov-bf16-rest`` at the first three (``precision="bf16"``: pure bf16,
    the same precision as the raw OpenVINO rows)."""
    args = ["--runtime", runtime, "--precision", precision, *plan.server_args]
    server = start_server(graph, plan.work / "server", plan.threads, args)
    try:
        if runtime == "openvino":
            system = "ours-ov-rest" if precision == "auto" else f"ours-ov-{precision}-rest"
            levels = plan.concurrency if precision == "auto" else plan.concurrency[:3]
            for c in levels:
                load(plan, "rest", server.url, server.pid, system, c)
            return
        if not suffix:
            out = plan.work / "raw" / "duel.json"
            args = [str(graph), "--url", server.url, "--threads", str(plan.threads), "--out", str(out)]
            _python("bench.duel", *args, *map(str, plan.images))
            plan.duel = json.loads(out.read_text())
            d = plan.duel
            line = f"{d['served_p50_ms']:.0f} ms served vs {d['raw_p50_ms']:.0f} ms session.run"
            print(f"[bench] c=1 duel: {line} (gap {d['gap_ms']:+.1f} ms)", flush=True)
        for transport in plan.transports if not suffix else ["rest"]:
            url = server.url if transport == "rest" else server.grpc_target
            for c in plan.concurrency if not suffix else plan.concurrency[:2]:
                load(plan, transport, url, server.pid, f"ours-{transport}{suffix}", c)
    finally:
        server.stop()


def _model_name(url: str) -> str:
    with urllib.request.urlopen(f"{url}/v1/model", timeout=10) as answer:
        return str(json.load(answer)["name"])


def analyzer_phase(plan: Plan, graph: Path) -> None:
    """perf_analyzer against our server over the v2 protocol: gRPC, gRPC streaming and REST."""
    argv = pa.install()
    data = pa.input_data(load_images(plan.images), plan.work / "perf_analyzer.json")
    server = start_server(
        graph, plan.work / "server", plan.threads, ["--runtime", "onnxruntime", *plan.server_args]
    )
    try:
        model, rest = _model_name(server.url), server.url.removeprefix("http://")
        for protocol, url, streaming in [
            ("grpc", server.grpc_target, False),
            ("grpc", server.grpc_target, True),
            ("http", rest, False),
        ]:
            for c in plan.concurrency[:2]:
                plan.record(pa.run(argv, url, protocol, model, data, c, _requests(plan, c), streaming))
    finally:
        server.stop()


def _requests(plan: Plan, concurrency: int) -> int:
    """Requests per perf_analyzer run: about as many as a load-generator window answers on this CPU."""
    return max(12, int(plan.duration * 2) * concurrency)


def analyzer_on_triton(plan: Plan, url: str, workdir: Path, system: str) -> None:
    data = pa.input_data(load_images(plan.images), workdir / "perf_analyzer.json", name="image_bytes")
    argv, address = pa.install(), url.removeprefix("http://")
    for c in plan.concurrency[:2]:
        name = f"perf_analyzer-{system}-http"
        options = {"input_name": "image_bytes", "system": name, "headers": [ACCESS_HEADER]}
        plan.record(pa.run(argv, address, "http", "segformer", data, c, _requests(plan, c), **options))


def triton_phase(plan: Plan, graph: Path, system: str, max_batch: int, delay_us: int) -> None:
    python = ensure_venv(plan.triton_venv)
    workdir = plan.work / "triton"
    triton = start_triton(python, graph, workdir, plan.threads, max_batch, delay_us)
    try:
        for c in plan.concurrency:
            load(plan, "triton", triton.url, triton.process.pid, system, c)
        if plan.perf_analyzer and max_batch == TRITON_CONFIGS[0][1]:  # the anchor, as perf_analyzer sees it
            with phase(plan, f"perf_analyzer on {system}"):
                analyzer_on_triton(plan, triton.url, workdir, system)
    finally:
        triton.stop()


def mixed_phase(plan: Plan, graph: Path) -> None:
    """Mixed sizes (0.3–2.5× of 683×512): ours over REST and gRPC streams, PyTriton, at c=4 and 16; then
    ``bench.mixed``: RSS over 1,000 requests at defaults (+ plot) and the batching soak (batch 8); then
    ``bench.memory``: one request's memory (MEMORY.md); ``bench.outputs``: the output formats (OUTPUTS.md);
    ``bench.native_memory``: native mode's memory on each runtime (NATIVE_MEMORY.md)."""
    folder = plan.work / "mixed-images"
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for index, body in enumerate(mixed.mixed_jpegs(plan.images, 40)):
        path = folder / f"{index:03d}.jpg"
        path.write_bytes(body)
        images.append(path)
    server = start_server(
        graph, plan.work / "server-mixed", plan.threads, ["--runtime", "onnxruntime", *plan.server_args]
    )
    try:
        for target, url in (("rest", server.url), ("grpc-stream", server.grpc_target)):
            for c in (4, 16):
                load(plan, target, url, server.pid, f"ours-{target}-mixed", c, images)
    finally:
        server.stop()
    if plan.triton:
        python = ensure_venv(plan.triton_venv)
        name, max_batch, delay_us = TRITON_CONFIGS[0]
        triton = start_triton(python, graph, plan.work / "triton", plan.threads, max_batch, delay_us)
        try:
            for c in (4, 16):
                load(plan, "triton", triton.url, triton.process.pid, f"{name}-mixed", c, images)
        finally:
            triton.stop()
    out = plan.work / "raw" / "mixed.json"
    args = _phase_args(plan, graph)
    _python("bench.mixed", *args, *map(str, plan.images))
    plan.mixed = json.loads(out.read_text())
    # one request's memory (issue #12's figures): a 36 Mpx PNG, three at once, 300 sizes -> MEMORY.md
    _python("bench.memory", *args, *map(str, plan.images))
    # each output format's encode cost at 0.35 and 12 Mpx, the PNG path side by side -> OUTPUTS.md
    _python("bench.outputs", *args, *_baseline(plan), *map(str, plan.images[:1]))
    # native mode (issue #30's figures): 800 distinct shapes, 20 6000x6000 PNGs at once -> NATIVE_MEMORY.md
    runtimes = ["onnxruntime", "openvino"] if plan.openvino else ["onnxruntime"]
    _python("bench.native_memory", *args, *(f"--runtime={r}" for r in runtimes))


def _phase_args(plan: Plan, graph: Path, out: Path | None = None) -> list[str]:
    """``--graph --out --work --threads`` of a phase run as its own process (``out``: default the
    report folder)."""
    return [
        "--graph",
        str(graph),
        "--out",
        str(out or plan.out),
        "--work",
        str(plan.work),
        "--threads",
        str(plan.threads),
    ]


def video_phase(plan: Plan, graph: Path) -> None:
    """``bench.video``: 1080p frames through one gRPC stream and four (``client.pipeline``), beside the
    same frames one by one over REST (one client and four)."""
    args = [*_phase_args(plan, graph), "--frames", str(plan.video_frames)]
    _python("bench.video", *args, *map(str, plan.images))
    plan.video = json.loads((plan.work / "raw" / "video.json").read_text())


def _baseline(plan: Plan) -> list[str]:
    """The outputs and phone phases' A/B against an older source tree (``--baseline-tree``), if given."""
    return ["--baseline-tree", str(plan.baseline_tree)] if plan.baseline_tree else []


def phone_phase(plan: Plan, graph: Path) -> None:
    """``bench.phone``: 12 Mpx photos beside their own size (a note; the analysis is PHONE.md)."""
    args = _phase_args(plan, graph) + (["--triton-venv", str(plan.triton_venv)] if plan.triton else [])
    args += _baseline(plan)
    _python("bench.phone", *args, *map(str, plan.images))
    plan.notes.append(phone_note(json.loads((plan.work / "phone.json").read_text())["summary"]))


def tracing_phase(plan: Plan, graph: Path) -> None:
    """``bench.tracing``: our server with tracing off and on at 100 % sampling, alternating (a note)."""
    out = plan.work / "raw" / "tracing.json"
    args = _phase_args(plan, graph, out)
    _python("bench.tracing", *args, *map(str, plan.images))
    result = json.loads(out.read_text())
    off, on = result["summary"]["off"], result["summary"]["on"]
    plan.notes.append(
        f"tracing (REST, c={result['concurrency']}, medians of {result['rounds']} alternating rounds): off "
        f"{off['images_per_s']:.2f} img/s p50 {off['p50_ms']:.1f} ms, on at 100 % sampling "
        f"{on['images_per_s']:.2f} img/s p50 {on['p50_ms']:.1f} ms "
        f"(ratio {result['throughput_ratio_on_off']:.3f}; "
        f"server CPU per image {result['cpu_ratio_on_off']:.3f}); "
        f"the spans of one request in-process: {result['span_cost']['on_us']:.0f} µs CPU on, export included "
        f"({result['span_cost']['off_us']:.0f} µs off)"
    )


def drift_note(plan: Plan) -> None:
    rows = {r["system"]: r for r in plan.results}
    first, last = rows.get("ort-mask"), rows.get("ort-mask-again")
    if not first or not last:
        return
    drift = last["images_per_s"] / first["images_per_s"] - 1
    note = f"drift: raw ORT batch 1 measured at the start {first['images_per_s']:.2f} img/s and at the end"
    note += f" {last['images_per_s']:.2f} img/s ({drift:+.0%})"
    if abs(drift) > 0.15:
        note += "; above ±15 %: other load on the machine, read the ratios with care"
    plan.notes.append(note)


def ovsoak_phase(plan: Plan, graph: Path) -> None:
    """``bench.ovsoak``: the batching soak on both runtimes and OpenVINO's RSS over 800 native shapes,
    summarised in the notes (raw figures: ``raw/ovsoak.json``)."""
    _python("bench.ovsoak", *_phase_args(plan, graph), *map(str, plan.images))
    result = json.loads((plan.work / "raw" / "ovsoak.json").read_text())
    soak, native = result["batching_soak"], result["native_shapes"]
    plan.notes.append(
        "batching soak (8 clients, --max-batch-size 8 --sessions 1, mixed sizes): "
        + "; ".join(
            f"{name} batch mean {r['mean_batch']:.2f}, peak RSS {r['rss_peak_mb']:.0f} MB "
            f"(drift {r['rss_drift']:+.1%}, growth {r['rss_growth']:+.1%}), {r['images_per_s']:.2f} img/s"
            for name, r in soak.items()
        )
        + f"; OpenVINO native over {native['shapes']} shapes: RSS after 100 {native['rss_100_mb']:.0f} MB, "
        f"peak {native['rss_peak_mb']:.0f} MB ({native['peak_over_100']:.2f}x)"
    )


def run(plan: Plan) -> Plan:
    start = time.monotonic()
    plan.work.mkdir(parents=True, exist_ok=True)
    g = graphs(plan)
    other = "-" + ("full" if plan.upsample == "topk" else "topk")
    with phase(plan, "raw ORT logits-only"):
        inproc(plan, "ort", str(g["logits"]), "ort-logits", output="logits")
    ceilings = [
        ("ort-mask", "mask", 1, 1),
        ("ort-mask-b4", "mask", 4, 1),
        ("ort-mask-2s", "mask", 1, 2),
        ("ort-pipeline", "pipeline", 1, 1),
    ]
    for system, output, batch, sessions in ceilings:
        with phase(plan, system):
            inproc(plan, "ort", str(g["main"]), system, output=output, batch=batch, sessions=sessions)
    if plan.openvino:
        for system, streams, shape in (
            ("ov-mask", 1, ()),
            ("ov-mask-2s", 2, ()),
            ("ov-mask-static", 1, ("--static",)),
        ):
            with phase(plan, f"raw OpenVINO bf16 {system}"):
                extra = ("--precision", "bf16", *shape)
                inproc(plan, "ov", str(g["main"]), system, sessions=streams, extra=extra)
    if "compare" in g:
        with phase(plan, f"raw ORT{other}"):
            inproc(plan, "ort", str(g["compare"]), f"ort-mask{other}")
    with phase(plan, "segformer-serve"):
        serve_phase(plan, g["main"])
    with phase(plan, "mixed sizes"):
        mixed_phase(plan, g["main"])
    with phase(plan, "video 1080p"):
        video_phase(plan, g["main"])
    with phase(plan, "tracing off vs on"):
        tracing_phase(plan, g["main"])
    with phase(plan, "phone-size photos"):
        phone_phase(plan, g["main"])
    if plan.openvino:
        with phase(plan, "segformer-serve on OpenVINO"):
            serve_phase(plan, g["main"], runtime="openvino")
        with phase(plan, "segformer-serve on OpenVINO, pure bf16"):
            serve_phase(plan, g["main"], runtime="openvino", precision="bf16")
        with phase(plan, "OpenVINO vs ORT batching soak, OpenVINO over many native shapes"):
            ovsoak_phase(plan, g["main"])
    if "compare" in g:
        with phase(plan, f"segformer-serve{other}"):
            serve_phase(plan, g["compare"], other)
    if plan.perf_analyzer:
        with phase(plan, "perf_analyzer"):
            analyzer_phase(plan, g["main"])
    if plan.triton:
        for system, max_batch, delay_us in TRITON_CONFIGS:
            with phase(plan, system):
                triton_phase(plan, g["main"], system, max_batch, delay_us)
    if plan.hf:
        with phase(plan, "transformers"):
            inproc(plan, "hf", plan.hf_source, "hf-transformers")
    with phase(plan, "raw ORT again"):
        inproc(plan, "ort", str(g["main"]), "ort-mask-again")  # the same ceiling at the end: machine drift
    drift_note(plan)
    plan.notes.append(f"total bench time {time.monotonic() - start:.0f} s")
    plan.save()
    return plan
