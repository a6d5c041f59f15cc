"""Matplotlib PNG plots of one run: throughput vs concurrency, latency percentiles, upsample modes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

Result = dict[str, Any]
SERVED = {
    "ours-rest": "tab:blue",
    "ours-grpc": "tab:orange",
    "ours-rest-full": "tab:purple",
    "ours-rest-topk": "tab:brown",
    "pytriton": "tab:cyan",
    "pytriton-b1": "tab:pink",
}
CEILINGS = {
    "ort-mask": ("raw ORT mask, batch 1", "tab:green"),
    "ort-mask-b4": ("raw ORT mask, batch 4", "tab:olive"),
    "ort-mask-2s": ("raw ORT mask, 2 sessions side by side", "black"),
    "ort-logits": ("raw ORT logits only", "tab:gray"),
    "hf-transformers": ("HF transformers", "tab:red"),
}


def _series(results: list[Result], system: str) -> list[Result]:
    return sorted(
        (r for r in results if r["system"] == system and r["requests"]), key=lambda r: r["concurrency"]
    )


def throughput(results: list[Result], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for system in SERVED:
        rows = _series(results, system)
        if rows:
            xs, ys = [r["concurrency"] for r in rows], [r["images_per_s"] for r in rows]
            ax.plot(xs, ys, "o-", color=SERVED[system], label=system)
    for system, (label, colour) in CEILINGS.items():
        rows = _series(results, system)
        if rows:
            ax.axhline(rows[0]["images_per_s"], linestyle="--", color=colour, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent clients (closed loop)")
    ax.set_ylabel("images / s")
    ax.set_ylim(bottom=0)
    ax.set_title("Throughput vs concurrency (dashed: in-process baselines)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def latency(results: list[Result], path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    c1 = [
        r
        for r in results
        if r["requests"] and (r["concurrency"] == 1 or r["system"].startswith(("ort", "hf")))
    ]
    names = [r["system"] for r in c1]
    for k, (key, label) in enumerate([("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99")]):
        left.bar([i + (k - 1) * 0.27 for i in range(len(c1))], [r[key] for r in c1], width=0.27, label=label)
    left.set_xticks(range(len(c1)), names, rotation=35, ha="right", fontsize=8)
    left.set_ylabel("latency per request / batch (ms)")
    left.set_title("Latency percentiles at concurrency 1")
    left.legend(fontsize=8)
    left.grid(True, axis="y", alpha=0.3)
    for system in SERVED:
        rows = _series(results, system)
        if rows:
            xs = [r["concurrency"] for r in rows]
            colour = SERVED[system]
            right.plot(xs, [r["p50_ms"] for r in rows], "o-", color=colour, label=f"{system} p50")
            right.plot(xs, [r["p99_ms"] for r in rows], "x--", color=colour, label=f"{system} p99")
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    right.set_xlabel("concurrent clients")
    right.set_ylabel("latency (ms)")
    right.set_title("Latency vs concurrency")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(results: list[Result], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "throughput_vs_concurrency.png", out_dir / "latency_percentiles.png"]
    throughput(results, paths[0])
    latency(results, paths[1])
    return paths
