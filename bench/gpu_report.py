"""Tables of a GPU bench run (``gpu-results.json``): the targets, then the numbers behind them."""

from __future__ import annotations

from typing import Any

CUDA = "CUDAExecutionProvider"


def _raw(results: dict[str, Any], key: str, precision: str, batch: int, mode: str = "numpy") -> float | None:
    for row in results.get(key, {}).get(precision, []):
        if row["batch"] == batch and row["mode"] == mode and "images_per_s" in row:
            return float(row["images_per_s"])
    return None


def _best(phase: dict[str, Any] | None, target: str = "grpc-stream", images: str = "one") -> dict | None:
    rows = [
        r for r in (phase or {}).get("loads", []) if r.get("target") == target and r.get("images") == images
    ]
    rows = [r for r in rows if "images_per_s" in r]
    return max(rows, key=lambda r: r["images_per_s"]) if rows else None


def _verdict(value: float | None, goal: float, dry: bool) -> str:
    if value is None:
        return "not measured"
    if dry:
        return "n/a (dry run)"
    return "met" if value >= goal else "**missed**"


def targets(results: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(check, value, target, verdict, from) rows for the issue's targets."""
    dry = results.get("env", {}).get("device") != "cuda"
    rows = []
    for precision in ("fp32", "fp16"):
        phase = results.get(f"served_{precision}")
        providers = (phase or {}).get("info", {}).get("providers") or []
        on_cuda = bool(providers) and providers[0] == CUDA
        rows.append(
            (
                f"B0 {precision} server on CUDA (/v1/model)",
                ",".join(providers) or "—",
                CUDA + " first",
                _verdict(1.0 if on_cuda else 0.0 if providers else None, 1.0, dry),
                "GET /v1/model providers",
            )
        )
    for precision, goal in (("fp32", 0.999), ("fp16", 0.995)):
        agree = (results.get(f"served_{precision}") or {}).get("agreement_vs_cpu")
        value = agree["min"] if agree else None
        rows.append(
            (
                f"B0 {precision} masks = CPU path (min over photos, REST+gRPC)",
                f"{value:.5f}" if value is not None else "—",
                f"≥ {goal}",
                _verdict(value, goal, dry),
                f"{len((results.get('served_ref') or {}).get('photos', []))} real photos, resize mode",
            )
        )
    best = _best(results.get("served_fp16"))
    value = best["images_per_s"] if best else None
    rows.append(
        (
            "B0 fp16 gRPC streaming, one size, img/s",
            f"{value:.0f}" if value else "—",
            "≥ 1000",
            _verdict(value, 1000, dry),
            f"c={best['clients']}, p50 {best['p50_ms']:.1f} ms" if best else "",
        )
    )
    batch = ((results.get("served_fp16") or {}).get("info", {}).get("batching") or {}).get("max_batch_size")
    raw = _raw(results, "raw_b0", "fp16", batch) if batch else None
    ratio = value / raw if value and raw else None
    rows.append(
        (
            "B0 fp16 ours / raw ORT CUDA at the same batch",
            f"{ratio:.2f}×" if ratio else "—",
            "≥ 0.8×",
            _verdict(ratio, 0.8, dry),
            f"raw batch {batch}: {raw:.0f} img/s" if raw else "",
        )
    )
    best5 = _best(results.get("b5_served"))
    value5 = best5["images_per_s"] if best5 else None
    raw5 = _raw(results, "b5_raw", "fp16", 8)
    rows.append(
        (
            "B5 fp16 gRPC streaming, img/s",
            f"{value5:.0f}" if value5 else "—",
            "≥ 150",
            _verdict(value5, 150, dry),
            f"raw ORT fp16 batch 8: {raw5:.0f} img/s" if raw5 else "",
        )
    )
    return rows


def _md(head: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.1f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def targets_table(results: dict[str, Any]) -> str:
    return _md(["check", "value", "target", "verdict", "from"], [list(r) for r in targets(results)])


def _raw_rows(results: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for key, variant in (("raw_b0", "b0"), ("b5_raw", "b5")):
        for precision, entries in (results.get(key) or {}).items():
            for r in entries:
                rows.append(
                    [
                        variant,
                        precision,
                        r["mode"],
                        r["batch"],
                        r.get("images_per_s", "—"),
                        r.get("p50_ms", "—"),
                        r.get("p90_ms", "—"),
                        r.get("error", "")[:80],
                    ]
                )
    return rows


def _load_rows(results: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for key in ("served_fp16", "served_fp32", "b5_served"):
        for r in (results.get(key) or {}).get("loads", []):
            if "skipped" in r:
                rows.append([key, r["images"], r["target"], r["clients"], "skipped", "", "", "", "", ""])
                continue
            rows.append(
                [
                    key,
                    r["images"],
                    r["target"],
                    r["clients"],
                    r["images_per_s"],
                    r["p50_ms"],
                    r["p99_ms"],
                    r["errors"],
                    r["server_cpu_cores"],
                    r["client_cpu_cores"],
                ]
            )
    return rows


def render(results: dict[str, Any], details: bool = True) -> str:
    """The whole report (markdown); ``details=False``: without the per-phase listing."""
    env = results.get("env", {})
    dry = env.get("device") != "cuda"
    parts = [
        "# GPU bench run" + (" — DRY RUN on the CPU: no number here is a GPU measurement" if dry else "")
    ]
    parts.append(
        f"gpu: {env.get('gpu')}; onnxruntime {env.get('onnxruntime')} {env.get('providers_available')}; "
        f"{env.get('cores')} cores; packages {env.get('packages')}"
    )
    phases = [
        [n, r["status"], r.get("seconds", ""), r.get("error", "")[:120]] for n, r in results["phases"].items()
    ]
    parts.append(_md(["phase", "status", "s", "error"], phases))
    parts.append(
        "## Raw ONNX Runtime (512², mask output)\n\n"
        + _md(
            ["variant", "precision", "mode", "batch", "img/s", "p50 ms", "p90 ms", "error"],
            _raw_rows(results),
        )
    )
    parts.append(
        "## Our server (closed loop; CPU = cores over the whole run)\n\n"
        + _md(
            [
                "phase",
                "images",
                "transport",
                "clients",
                "img/s",
                "p50 ms",
                "p99 ms",
                "errors",
                "server CPU",
                "client CPU",
            ],
            _load_rows(results),
        )
    )
    mem = [[m["arena"], m["peak_mib"], m["final_mib"], m["unit"]] for m in results.get("memory") or []]
    parts.append("## Memory over mixed shapes\n\n" + _md(["arena", "peak MiB", "final MiB", "unit"], mem))
    first = [
        [
            f["algo"],
            f["create_s"],
            f["first_ever_ms"],
            f["extra_ms_total"],
            "; ".join(f"{s['shape']}: {s['first_ms']:.0f}/{s['steady_ms']:.1f}" for s in f["shapes"]),
        ]
        for f in results.get("first_runs") or []
    ]
    parts.append(
        "## First run per new shape (ms first / steady)\n\n"
        + _md(["algo", "session s", "first-ever ms", "extra ms over shapes", "per shape"], first)
    )
    tune = []
    for t in results.get("tune") or []:
        batch = (t.get("batching") or {}).get("max_batch_size")
        raw = _raw(results, "raw_b0", "fp16", batch) if batch else None
        served_ = t.get("images_per_s")
        ratio = f"{served_ / raw:.2f}× (b{batch})" if served_ and raw else "—"
        tune.append(
            [
                t["variant"],
                t.get("flags", ""),
                served_ or "skipped",
                t.get("p50_ms", ""),
                t.get("errors", ""),
                batch or "",
                ratio,
            ]
        )
    parts.append(
        "## Server settings on CUDA (fp16, gRPC streaming, most clients)\n\n"
        + _md(
            ["variant", "flags", "img/s", "p50 ms", "errors", "max batch", "vs raw ORT at that batch"], tune
        )
    )
    if details:
        parts.append("## Targets\n\n" + targets_table(results))
    return "\n\n".join(parts)
