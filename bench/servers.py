"""Exporting the graphs under test and starting/stopping our server as a separate process.

Graphs are exported once with the project's ``segformer-export`` into the bench cache and reused while
they are newer than the exporter's sources (``--fresh`` forces a re-export). The server is started from
the exported ``.onnx`` so the server and every baseline run exactly the same graph.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import free_port, stop_session, wait_ready

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> list[str]:
    """``python -m PACKAGE`` for a console script, run with ``cwd=ROOT``: the code of this checkout is
    what runs, whatever an installed (possibly editable, elsewhere) console script would import, and
    it works where nothing is installed (the GPU machine)."""
    module = {"segformer-export": "export", "segformer-serve": "server"}[name]
    return [sys.executable, "-m", module]


def _stale(graph: Path) -> bool:
    if not graph.exists():
        return True
    sources = [p for d in ("export", "model", "contract") for p in (ROOT / d).glob("*.py")]
    newest = max((p.stat().st_mtime for p in sources), default=0.0)
    return graph.stat().st_mtime < newest


def export_graph(
    source: str,
    out: Path,
    outputs: str = "mask",
    upsample: str = "full",
    fresh: bool = False,
    extra: list[str] | None = None,
) -> Path:
    """``segformer-export SOURCE -o OUT --upsample MODE`` (and ``--outputs`` when not the default)."""
    if not fresh and not _stale(out):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # the exporter's own ORT-vs-PyTorch verification is tested elsewhere and takes minutes on 2 cores
    cmd = [*_tool("segformer-export"), source, "-o", str(out), "--no-verify"]
    if outputs != "mask":
        cmd += ["--outputs", outputs]
    cmd += ["--upsample", upsample]  # always explicit: the exporter's default has changed before
    cmd += extra or []
    print(f"[bench] exporting {source} -> {out.name}", flush=True)
    start = time.monotonic()
    subprocess.run(cmd, check=True, cwd=ROOT)
    print(f"[bench] exported {out.name} in {time.monotonic() - start:.0f}s", flush=True)
    return out


@dataclass
class OurServer:
    process: subprocess.Popen[bytes]
    url: str
    grpc_target: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        stop_session(self.process, grace_s=40)


def start_server(
    graph: Path, workdir: Path, threads: int, extra: list[str] | None = None, root: Path = ROOT
) -> OurServer:
    """``segformer-serve --model GRAPH`` on free loopback ports; returns once ``/readyz`` answers 200.

    The server runs with its default pool, which sizes itself from the cores it may use; a thread budget
    below the machine's cores is given to it as a CPU affinity of ``threads`` cores. ``root``: another
    checkout's code (an A/B against an older commit), run with this environment's packages.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port, grpc_port = free_port(), free_port()
    cmd = [*_tool("segformer-serve"), "--model", str(graph), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--grpc-port", str(grpc_port), "--log-level", "warning"]
    cmd += ["--cache-dir", str(workdir / "cache"), *(extra or [])]
    cores = sorted(os.sched_getaffinity(0))
    pin = None if threads >= len(cores) else cores[:threads]
    log = workdir / f"server-{graph.stem}.log"
    env = {**os.environ, "PYTHONPATH": str(root)} if root != ROOT else None
    with log.open("wb") as sink:
        process = subprocess.Popen(
            cmd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=root,  # another source tree (an A/B baseline) runs its own code
            env=env,
            start_new_session=True,
            preexec_fn=None if pin is None else lambda: os.sched_setaffinity(0, pin),
        )
    server = OurServer(process, f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", log)
    if wait_ready(process, f"{server.url}/readyz", "segformer-serve", log, poll_s=0.3):
        return server
    server.stop()
    raise RuntimeError(f"segformer-serve not ready after 180 s; see {log}")
