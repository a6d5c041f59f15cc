"""Where the server's time goes: ``python -m bench.profile --graph G [--concurrency 4] [--py-spy PATH]``.

1. ONNX Runtime's own profiler on the graph in-process (share of each operator type, ms per run), at
   the size the server runs (512×512 in, mask at a photo's 683×512);
2. the server under closed-loop REST load with ``py-spy record`` on its pid: the busy samples (waiting
   threads dropped) grouped by their innermost Python frames.
py-spy is not a project dependency: ``--py-spy`` points at a binary (``pip install py-spy`` anywhere,
e.g. the PyTriton venv has it). Writes ``ops.txt``, ``pyspy.txt`` (summary) and ``pyspy-raw.txt``.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import real_photos, shared_dir
from bench.ortcase import make_session
from bench.servers import ROOT, start_server

WAITING = ("epoll_wait", "PyThread_acquire_lock_timed", "select_epoll_poll", "do_futex_wait", "sem_timedwait")


def op_profile(graph: Path, threads: int, runs: int = 8) -> str:
    session = make_session(graph, threads, profile_prefix=str(ROOT / ".cache" / "bench" / "ortprof"))
    feed = {"image": np.full((1, 512, 512, 3), 100, np.uint8), "output_size": np.array([512, 683])}
    for _ in range(runs):
        session.run(["mask"], feed)
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    by_op: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"]
    total = sum(by_op.values())
    lines = [f"{graph.name}: {total / runs / 1000:.1f} ms of kernels per run, 512x512 in, 512x683 mask out"]
    lines += [f"{v / total:6.1%}  {v / runs / 1000:7.1f} ms  {k}" for k, v in by_op.most_common(14)]
    return "\n".join(lines)


def summarize_pyspy(raw: Path, top: int = 25) -> str:
    frames_by_key: collections.Counter[str] = collections.Counter()
    total = busy = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, count_text = line.rsplit(" ", 1)
        count = int(count_text)
        total += count
        frames = stack.split(";")
        if "Session.run" not in stack and any(w in f for f in frames[-6:] for w in WAITING):
            continue
        busy += count
        python = [f.split(" (")[0] for f in frames if ".py:" in f]
        frames_by_key[" <- ".join(reversed(python[-3:]))] += count
    lines = [f"{total} samples, {busy} busy (ORT's own worker threads are native: not sampled)"]
    lines += [f"{v / max(busy, 1):6.1%}  {k}" for k, v in frames_by_key.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("--graph", type=Path, required=True)
    p.add_argument("--out", type=Path, default=ROOT / ".cache" / "bench" / "profile")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--py-spy", default=str(ROOT / ".cache" / "pytriton-venv" / "bin" / "py-spy"))
    p.add_argument("--shared", default=None)
    p.add_argument("--server-arg", action="append", default=[])
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    ops = op_profile(args.graph, args.threads)
    (args.out / "ops.txt").write_text(ops + "\n")
    print(ops, flush=True)
    server = start_server(args.graph, args.out / "server", args.threads, args.server_arg)
    raw = args.out / "pyspy-raw.txt"
    try:
        load = [sys.executable, "-m", "bench.loadgen", "--target", "rest", "--url", server.url]
        load += ["--concurrency", str(args.concurrency), "--duration", str(args.duration)]
        load += ["--pid", str(server.pid), "--out", str(args.out / "load.json")]
        driver = subprocess.Popen([*load, *map(str, real_photos(shared_dir(args.shared)))], cwd=ROOT)
        time.sleep(3.0)
        spy = [args.py_spy, "record", "--pid", str(server.pid), "--duration", str(int(args.duration - 5))]
        spy += ["--rate", "50", "--format", "raw", "--threads", "--native", "-o", str(raw)]
        subprocess.run(spy, check=True, capture_output=True)
        driver.wait()
    finally:
        server.stop()
    summary = summarize_pyspy(raw)
    (args.out / "pyspy.txt").write_text(summary + "\n")
    print(summary, "\n", (args.out / "load.json").read_text(), flush=True)


if __name__ == "__main__":
    main()
