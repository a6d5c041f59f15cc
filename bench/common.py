"""Shared helpers: where the photos are, latency statistics, JSON results, free ports, process trees.

Imported by the orchestrator, the load generator and the in-process baselines, so it stays light
(stdlib + numpy + pillow; psutil only inside functions).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SHARED_ENV = "SEGFORMER_BENCH_SHARED"


def shared_dir(explicit: str | None = None) -> Path | None:
    """The shared/ folder (weights + photos): ``--shared`` or ``$SEGFORMER_BENCH_SHARED``; None if absent."""
    value = explicit or os.environ.get(SHARED_ENV)
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    return path if path.is_dir() else None


def real_photos(shared: Path | None) -> list[Path]:
    """The real JPEG photos under ``shared/data`` (ADE20K validation image + photos), sorted."""
    if shared is None:
        return []
    return sorted((shared / "data" / "ade20k").glob("*.jpg")) + sorted(
        (shared / "data" / "photos").glob("*.jpg")
    )


def synthetic_jpegs(count: int = 4, seed: int = 0, sizes: list[tuple[int, int]] | None = None) -> list[bytes]:
    """Smooth random JPEGs, photo-like (width, height) ``sizes`` by default, for runs without photos."""
    rng = np.random.default_rng(seed)
    sizes = sizes or [(683, 512), (640, 480), (600, 400), (512, 683)]
    out = []
    for i in range(count):
        width, height = sizes[i % len(sizes)]
        small = rng.integers(0, 256, size=(height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def load_images(paths: list[Path]) -> list[bytes]:
    """JPEG bytes of ``paths``, or synthetic JPEGs when there are none."""
    return [p.read_bytes() for p in paths] if paths else synthetic_jpegs()


@dataclass
class RunResult:
    """One measured configuration: a system at one concurrency (or batch size)."""

    system: str
    concurrency: int
    images_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    requests: int
    errors: int = 0
    wall_s: float = 0.0
    cpu_cores: float | None = None  # CPU of the measured system (process tree), in cores
    peak_rss_mb: float | None = None
    client_cpu_cores: float | None = None  # the load generator's own CPU, in cores
    batch: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def summarize(system: str, concurrency: int, latencies_s: list[float], wall_s: float, **kw: Any) -> RunResult:
    """A ``RunResult`` from per-request latencies (seconds) over a measurement window."""
    lat = np.asarray(latencies_s, dtype=np.float64) * 1000.0
    pct = np.percentile(lat, [50, 95, 99]) if lat.size else np.full(3, float("nan"))
    images = kw.pop("images", lat.size)
    return RunResult(
        system=system,
        concurrency=concurrency,
        images_per_s=images / wall_s if wall_s > 0 else 0.0,
        p50_ms=float(pct[0]),
        p95_ms=float(pct[1]),
        p99_ms=float(pct[2]),
        requests=int(lat.size),
        wall_s=wall_s,
        **kw,
    )


def write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_session(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM ``process``; after ``grace_s`` kill its whole session (we started it with
    ``start_new_session``: the server and its children, nothing else)."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def wait_ready(process: subprocess.Popen[bytes], url: str, what: str, log: Path, poll_s: float) -> bool:
    """Poll ``url`` until it answers 200 (True) or 180 s pass (False); raise if ``process`` exits first."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(poll_s)
    return False


def wait_port(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.2)
    return False


class TreeMonitor:
    """CPU seconds and peak RSS of a process and all its descendants (psutil), sampled on demand."""

    def __init__(self, pid: int) -> None:
        import psutil  # the `bench` extra; absent on the GPU machine, where load runs without --pid

        self._psutil = psutil
        self.root = psutil.Process(pid)
        self.peak_rss = 0
        self._cpu_seen: dict[int, float] = {}

    def _procs(self) -> list[Any]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except self._psutil.Error:
            return []

    def sample(self) -> float:
        """Update the peak RSS; total CPU seconds of the tree (exited children keep their last value)."""
        rss = 0
        for proc in self._procs():
            try:
                times = proc.cpu_times()
                self._cpu_seen[proc.pid] = times.user + times.system
                rss += proc.memory_info().rss
            except self._psutil.Error:
                continue
        self.peak_rss = max(self.peak_rss, rss)
        return sum(self._cpu_seen.values())


def phase_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """The arguments every ``make bench`` phase module takes: ``--graph``, ``--out``, ``--work``,
    ``--threads`` and the photos."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--graph", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("photos", nargs="*", type=Path)
    return p
