"""Our server in the GPU bench: start it, check what it reports, compare its masks, drive it with load.

The server runs as its own process (``bench.servers.start_server``) with every core; the load
generator runs as ``procs`` processes side by side (one Python process cannot drive ~1,000 requests/s
alone), each with its share of the clients, and their windows are merged: images/s add up, latency
percentiles come from every answer of every process.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.gpu_env import nvidia_smi
from bench.gpu_raw import device_used_mib
from bench.servers import ROOT, OurServer, start_server

# 128 closed-loop clients must not meet the default queue of 64 (503s); info logs name the providers
# ONNX Runtime always: this bench measures ORT CUDA (its CPU dry run would pick OpenVINO on an AMX CPU)
QUEUE_FLAGS = ["--runtime", "onnxruntime", "--max-queue-size", "1024", "--log-level", "info"]


def start(graph: Path, device: str, work: Path, flags: list[str]) -> tuple[OurServer, dict[str, Any]]:
    """The server on ``graph`` and its ``GET /v1/model`` (providers, batching, precision)."""
    cmd = ["--device", device, *QUEUE_FLAGS, *flags]
    began = time.perf_counter()
    server = start_server(graph, work, len(os.sched_getaffinity(0)), cmd)
    ready_s = time.perf_counter() - began
    with urllib.request.urlopen(f"{server.url}/v1/model", timeout=10) as answer:
        model = json.loads(answer.read())
    info = {k: model.get(k) for k in ("name", "precision", "providers", "batching")}
    info |= {"flags": cmd, "ready_s": ready_s}
    print(f"[gpu] server {graph.name} {json.dumps(info)}", flush=True)
    return server, info


def mask_rest(server: OurServer, jpeg: bytes) -> np.ndarray:
    request = urllib.request.Request(
        f"{server.url}/v1/segment", data=jpeg, headers={"Content-Type": "image/jpeg"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=120) as answer:
        return np.asarray(Image.open(io.BytesIO(answer.read())))


def mask_grpc(server: OurServer, jpeg: bytes) -> np.ndarray:
    import grpc

    from server.grpc.gen import segmentation_pb2 as pb
    from server.grpc.gen import segmentation_pb2_grpc as pb_grpc

    with grpc.insecure_channel(server.grpc_target) as channel:
        reply = pb_grpc.SegmentationServiceStub(channel).Segment(pb.SegmentRequest(image=jpeg), timeout=120)
    return np.asarray(Image.open(io.BytesIO(reply.mask.data)))


def masks(server: OurServer, photos: list[Path]) -> dict[str, list[np.ndarray]]:
    jpegs = [p.read_bytes() for p in photos]
    return {"rest": [mask_rest(server, j) for j in jpegs], "grpc": [mask_grpc(server, j) for j in jpegs]}


def agreement(got: dict[str, list[np.ndarray]], reference: list[np.ndarray]) -> dict[str, Any]:
    """Fraction of equal pixels per photo and transport against the CPU masks (0 on a shape mismatch)."""
    out: dict[str, Any] = {}
    for transport, masks_ in got.items():
        per = [
            float((m == r).mean()) if m.shape == r.shape else 0.0
            for m, r in zip(masks_, reference, strict=True)
        ]
        out[transport] = {"min": min(per), "mean": float(np.mean(per)), "per_photo": per}
    out["min"] = min(v["min"] for v in out.values())
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (``/proc``; the server is one process)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_gpu_mib(pid: int) -> float | None:
    """The server's own device memory (``nvidia-smi`` per process), else the whole device's."""
    apps = nvidia_smi("--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits")
    for line in (apps or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid):
            return float(parts[1])
    return device_used_mib()


def load(
    server: OurServer, target: str, files: list[Path], clients: int, duration: float, procs: int, work: Path
) -> dict[str, Any]:
    """``clients`` closed-loop clients over ``target`` (``rest`` / ``grpc-stream``), ``procs`` generators."""
    url = server.grpc_target if target.startswith("grpc") else server.url
    procs = max(1, min(procs, clients))
    shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    work.mkdir(parents=True, exist_ok=True)
    running = []
    cpu0, began = _cpu_seconds(server.pid), time.perf_counter()
    for i, share in enumerate(shares):
        out = work / f"{target}-c{clients}-p{i}.json"
        cmd = [sys.executable, "-m", "bench.loadgen", "--target", target, "--url", url, "--keep-latencies"]
        cmd += ["--concurrency", str(share), "--duration", str(duration), "--max-warmup", "20"]
        cmd += ["--out", str(out), *map(str, files)]
        running.append((subprocess.Popen(cmd, cwd=ROOT), out))
    for process, _ in running:
        if process.wait(timeout=duration * 4 + 200) != 0:
            raise RuntimeError(f"load generator exited with {process.returncode}")
    wall = time.perf_counter() - began
    parts = [json.loads(out.read_text()) for _, out in running]
    latencies = np.concatenate([np.asarray(p["extra"]["latencies_ms"], dtype=np.float64) for p in parts])
    pct = np.percentile(latencies, [50, 95, 99]) if latencies.size else np.full(3, np.nan)
    row = {
        "target": target,
        "clients": clients,
        "procs": procs,
        "images_per_s": sum(p["images_per_s"] for p in parts),
        "p50_ms": float(pct[0]),
        "p95_ms": float(pct[1]),
        "p99_ms": float(pct[2]),
        "requests": int(latencies.size),
        "errors": sum(p["errors"] for p in parts),
        "error_samples": [s for p in parts for s in p["extra"]["error_samples"]][:3],
        "server_cpu_cores": (_cpu_seconds(server.pid) - cpu0) / wall,  # over the whole run, warm-up included
        "client_cpu_cores": sum(p["client_cpu_cores"] for p in parts),
    }
    print(f"[gpu] load {json.dumps(row)}", flush=True)
    return row
