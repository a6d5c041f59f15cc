"""The console table and the markdown report (``docs/benchmarks/README.md``) of one run."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import ratios as R

Result = dict[str, Any]
COLUMNS = [
    "system",
    "c / batch",
    "img/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "CPU cores",
    "img/CPU·s",
    "peak RSS MB",
    "client CPU",
]
DESCRIPTIONS = {
    "ort-logits": "raw ORT `session.run`, graph cut at `logits` (no upsample/argmax), pre-resized input",
    "ort-mask": "raw ORT `session.run` of the serving graph (mask at original size), pre-resized input",
    "ort-mask-b4": "the same, batches of 4 (latency is per batch)",
    "ort-mask-2s": "the same, batch 1, two sessions of half the threads looping side by side",
    "ort-mask-again": "`ort-mask` measured again at the end of the run (drift check)",
    "ort-mask-full": "raw ORT `session.run`, `--upsample full` graph (all 150 channels upsampled)",
    "ort-mask-topk": "raw ORT `session.run`, graph exported with `--upsample topk`",
    "ort-pipeline": "in-process JPEG → decode → resize → `session.run` → PNG (the server's `imaging` code), "
    "one session, no transport",
    "hf-transformers": "`SegformerImageProcessorPil` + eager model + `post_process_semantic_segmentation`",
    "ov-mask": "raw OpenVINO bf16 (`bench/ovcase.py`): the whole serving graph, dynamic shapes, one stream "
    "of every thread, pre-resized input",
    "ov-mask-2s": "the same, two streams of half the threads looping side by side",
    "ov-mask-static": "the same compiled for the inference size (`[1, 512, 512, 3]`): raw OpenVINO's best "
    "on a fixed size, pure bf16",
    "ours-rest": "segformer-serve, REST `POST /v1/segment` (JPEG body → PNG mask)",
    "ours-ov-rest": "segformer-serve on OpenVINO with its defaults on this CPU (`mixed`: stages 1-3 bf16, "
    "stage 4 + decode head fp32; static shapes), REST",
    "ours-ov-bf16-rest": "the same with `--precision bf16` (pure bf16, the raw OpenVINO rows' precision), "
    "REST",
    "ours-grpc": "segformer-serve, gRPC unary `Segment`",
    "ours-rest-full": "segformer-serve on the `--upsample full` graph, REST",
    "ours-rest-topk": "segformer-serve on the `--upsample topk` graph, REST",
    "pytriton": "PyTriton 0.7.0 (Triton 2.51 core) serving the same graph, JPEG → PNG, one ORT session "
    "behind Triton's dynamic batcher as the issue's anchor ran it (max batch 4, 10 ms queue delay)",
    "pytriton-b1": "the same PyTriton with batching off (max batch 1): its best setting on this CPU",
    "perf_analyzer-grpc": "Triton's perf_analyzer (2.60) against segformer-serve over the Open Inference "
    "Protocol, gRPC `ModelInfer` (JPEG as BYTES `image` [1]; all three outputs: mask, mask_png, classes)",
    "perf_analyzer-grpc-stream": "the same over gRPC `ModelStreamInfer` (perf_analyzer --streaming)",
    "perf_analyzer-http": "the same over REST `POST /v2/models/{name}/infer` (binary tensor data)",
    "perf_analyzer-pytriton-http": "perf_analyzer against the PyTriton anchor over its REST v2 endpoint "
    "(input `image_bytes`, output `mask_png`)",
}


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}"


def rows(results: list[Result]) -> list[list[str]]:
    out = []
    for r in results:
        errors = f" ({r['errors']} errors)" if r.get("errors") else ""
        out.append(
            [
                r["system"] + errors,
                str(r["concurrency"]),
                _fmt(r["images_per_s"], 2),
                _fmt(r["p50_ms"]),
                _fmt(r["p95_ms"]),
                _fmt(r["p99_ms"]),
                _fmt(r.get("cpu_cores"), 2),
                _fmt(R.efficiency(r), 2),
                _fmt(r.get("peak_rss_mb")),
                _fmt(r.get("client_cpu_cores"), 2),
            ]
        )
    return out


def console(results: list[Result], computed: list[R.Ratio]) -> str:
    table = [COLUMNS, *rows(results)]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    lines = []
    for row in table:
        cells = zip(row, widths, strict=True)
        lines.append("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(cells)))
    lines.append("")
    for ratio in computed:
        lines.append(
            f"{ratio.name:<50} {R.format_value(ratio):>8}  target {ratio.target:<8} {R.verdict(ratio)}"
        )
    return "\n".join(lines)


def _md_table(header: list[str], body: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in body),
    ]


def markdown(
    results: list[Result], computed: list[R.Ratio], context: dict[str, Any], plots: list[Path]
) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks (CPU)",
        "",
        f"Generated by `make bench` (`python -m bench`) on {now}. Regenerate with `make bench`; the GPU",
        "procedure and its (not yet measured) results are in [GPU.md](GPU.md); profiles and fixes in",
        "[PROFILE.md](PROFILE.md).",
        "",
        "## Set-up",
        "",
        f"- machine: {context.get('cpu', platform.processor())}, {os.cpu_count()} cores visible, "
        f"load average at start {context.get('load', '?')} (shared machine: absolute numbers are noisy, "
        "ratios from one run are what count)",
        f"- model: `{context.get('model')}`; images: {context.get('images')}",
        f"- graph: exported with `--upsample {context.get('upsample')}`, the same graph for every system"
        " (rows ending in `-full`/`-topk`: the other upsample mode, for comparison)",
        f"- thread budget: {context.get('threads')} intra-op threads everywhere (ORT sessions, torch); "
        f"server flags: `{context.get('server_args') or 'defaults'}`",
        f"- closed loop, {context.get('duration')} s windows (opening once every client had an answer); "
        f"in-process baselines {context.get('baseline_duration')} s; load generator in its own process",
        f"- versions: {context.get('versions')}",
        "",
        "## Targets",
        "",
        *_md_table(
            ["ratio", "value", "target", "verdict", "from"],
            [[x.name, R.format_value(x), x.target, R.verdict(x), x.detail] for x in computed],
        ),
        "",
        "## Results",
        "",
        "`c / batch`: concurrent clients for servers, batch size for in-process runs. CPU is the measured",
        "system's process tree (cores); `client CPU` is the load generator's own. Peak RSS is the process",
        "tree's during the window; a server keeps memory that an earlier window made it take.",
        "",
        *_md_table(COLUMNS, rows(results)),
        "",
        *[f"![{p.stem}]({p.name})" for p in plots],
        "",
        "## Systems",
        "",
        *[f"- `{name}`: {text}" for name, text in DESCRIPTIONS.items()],
    ]
    stages = next((r["extra"].get("stage_ms") for r in results if r["system"] == "ort-pipeline"), None)
    if stages:
        parts = ", ".join(f"{k} {v:.1f} ms" for k, v in stages.items())
        lines += ["", f"In-process stage times per image (`ort-pipeline`): {parts}."]
    duel = context.get("duel")
    if duel:
        rounds = ", ".join(f"{r['served_p50_ms']:.0f} vs {r['raw_p50_ms']:.0f}" for r in duel["rounds"])
        lines += [
            "",
            "Latency at concurrency 1, interleaved (`bench/duel.py`: rounds of a raw `session.run` loop,",
            f"then sequential REST requests, same photos): p50 per round, served vs raw, in ms: {rounds}.",
        ]
    lines += _mixed_section(context.get("mixed"))
    lines += video_section(context.get("video"))
    notes = context.get("notes") or []
    if notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def video_section(video: dict[str, Any] | None) -> list[str]:
    """``bench/video.py``: 1080p frames, gRPC streams (``segformer-client``'s pipeline) vs REST one by one."""
    if not video or not video.get("rows"):
        return []
    width, height = video["size"]
    lines = [
        "",
        f"## Video frames ({width}×{height})",
        "",
        f"{video['frames']} PNG frames of the photos (`bench/video.py`), the same bytes for every row, one "
        "server (ONNX Runtime, defaults); streams through `client.pipeline` (4 frames in flight each), REST",
        "rows `POST /v1/segment` one frame at a time per client. Latency: a frame's send to its answer.",
        "",
        "| system | clients | fps | p50 (ms) | p95 (ms) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['system']} | {r['clients']} | {r['fps']:.2f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} |"
        for r in video["rows"]
    ]
    return lines


def _mixed_section(mixed: dict[str, Any] | None) -> list[str]:
    """Mixed sizes (``bench/mixed.py``): RSS over the 1,000-request soak at defaults, the batch-8 soak."""
    if not mixed or "rest-defaults" not in mixed:
        return []
    soak, b8 = mixed["rest-defaults"], mixed.get("rest-b8-one-session", {})
    grpc = mixed.get("grpc-stream-defaults", {})
    lines = [
        "",
        "## Mixed sizes and memory",
        "",
        "Photos resized to random sizes 0.3–2.5× of 683×512 (`bench/mixed.py`); the `-mixed` rows above are",
        "the same images through the load generator.",
        "",
        f"- {soak['requests']} requests over REST, 4 clients, the server's defaults: "
        f"{soak['images_per_s']:.2f} img/s, {soak['errors']} errors; server RSS peak "
        f"{soak['rss_peak_mb']:.0f} MB (target ≤ 600 MB), at the 200th request {soak['rss_200_mb']:.0f} MB, "
        f"at the last {soak['rss_last_mb']:.0f} MB ({soak['rss_drift']:+.1%}; target within ±5 %).",
    ]
    if grpc:
        lines.append(f"- {grpc['requests']} of them over gRPC streams (4): {grpc['images_per_s']:.2f} img/s.")
    if b8:
        lines.append(
            f"- {b8['requests']} requests, 8 clients, `--max-batch-size 8 --sessions 1 --max-queue-delay-ms "
            f"1000`: mean batch {b8['mean_batch']:.2f} (target ≥ 4), {b8['images_per_s']:.2f} img/s "
            "(reported, not targeted: batches do not pay on 2 cores)."
        )
    lines.append("- One request's memory (a 36 Mpx PNG, three at once, 300 sizes): [MEMORY.md](MEMORY.md).")
    if mixed.get("plot"):
        lines += ["", "![rss_over_requests](rss_over_requests.png)"]
    return lines
