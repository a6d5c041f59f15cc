"""A rolling update of two replicas behind haproxy, under load: zero failed requests, every frame answered.

Each old replica is replaced the way a Deployment with ``maxSurge: 1, maxUnavailable: 0`` and our pod
spec replaces a pod: the new pod starts and becomes ready (haproxy's /readyz check passes) -> the old pod
is terminating: its endpoint stops taking new traffic (haproxy ``drain``) -> preStop pause -> SIGTERM ->
the server answers what it holds, ends its gRPC streams with UNAVAILABLE, exits 0 -> endpoint removed.
Meanwhile 8 REST clients and one gRPC stream run through haproxy. Exit status 0 only if nothing failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.deploy.rollout.haproxy import HAProxy
from tests.deploy.rollout.load import Stream, Tally, rest_client
from tests.deploy.rollout.replica import Replica
from tests.grpc.serving import free_port

T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", flush=True)


def export_model(workdir: Path) -> Path:
    path = workdir / "random_b0.onnx"
    command = [sys.executable, "-m", "export", "random:b0", "-o", str(path), "--no-verify"]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    return path


def start_ready(lb: HAProxy, name: str, model: Path, workdir: Path, args: argparse.Namespace) -> Replica:
    """A new pod: started, then in rotation once haproxy's readiness check passes."""
    replica = Replica(name, model, workdir, args.graceful_timeout)
    replica.slot = lb.free_slot()
    lb.add(replica.slot, replica.rest_port, replica.grpc_port)
    deadline = time.monotonic() + args.startup_timeout
    while lb.status(replica.slot) != ("UP", "UP"):
        replica.alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} not ready in {args.startup_timeout} s:\n{replica.log_tail()}")
        time.sleep(0.05)
    say(f"replica {name} ready in slot {replica.slot} after {time.monotonic() - replica.started:.1f} s")
    return replica


def terminate(lb: HAProxy, old: Replica, args: argparse.Namespace) -> float:
    """The old pod's termination: out of rotation, preStop pause, SIGTERM, gone. Seconds SIGTERM took."""
    assert old.slot is not None
    if args.skip_drain:  # the negative control: SIGTERM while the endpoint still takes traffic
        say(f"replica {old.name}: terminating WITHOUT leaving the endpoints first (--skip-drain)")
    else:
        lb.set_state(old.slot, "drain")
        say(f"replica {old.name}: terminating, endpoint drained; preStop pause {args.pause} s")
        time.sleep(args.pause)
    old.frames = old.frames_answered()
    inflight = old.in_flight()
    took = old.sigterm()
    say(
        f"replica {old.name}: SIGTERM with {inflight} in flight -> exit {old.proc.returncode} in {took:.2f} s"
    )
    if old.proc.returncode != 0:
        raise RuntimeError(f"replica {old.name} exited {old.proc.returncode}:\n{old.log_tail()}")
    lb.remove(old.slot)
    return took


def run(args: argparse.Namespace, workdir: Path) -> list[str]:
    model = args.model or export_model(workdir)
    say(f"model {model.name}; haproxy in front of {args.replicas} replicas")
    lb = HAProxy(workdir, free_port(), free_port())
    lb.wait_free_slots_down()
    replicas: list[Replica] = []  # the current ones
    everyone: list[Replica] = []
    stop, tally = threading.Event(), Tally()
    clients = [
        threading.Thread(target=rest_client, args=(lb.rest_url, i, stop, tally), daemon=True)
        for i in range(args.clients)
    ]
    stream = Stream(lb.grpc_address, stop)
    problems: list[str] = []
    try:
        replicas = [start_ready(lb, name, model, workdir, args) for name in "ab"[: args.replicas]]
        everyone += replicas
        for thread in [*clients, stream.thread]:
            thread.start()
        time.sleep(args.settle)
        say(f"load running: {tally.ok} REST answers, {len(stream.answered)} frames so far")
        for index, name in enumerate("cd"[: args.replicas]):
            new = start_ready(lb, name, model, workdir, args)
            everyone.append(new)
            took = terminate(lb, replicas[index], args)
            if took > args.graceful_timeout:
                problems.append(f"replica {replicas[index].name} took {took:.1f} s to stop")
            replicas[index] = new
        time.sleep(args.settle)
        stop.set()
        stream.thread.join(timeout=90)
        for replica in replicas:
            replica.frames = replica.frames_answered()
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=90)
        stream.thread.join(timeout=90)
        requests = lb.sessions("rest")
        for replica in everyone:
            replica.kill()
        lb.stop()
    say(f"REST: {tally.ok} answered, {len(tally.failures)} failed; per LB slot {requests}")
    served = {r.name: r.frames for r in everyone}
    say(f"gRPC stream: {stream.sent} frames sent, {len(stream.answered)} answered; per replica {served}")
    problems += tally.failures + stream.failures
    if stream.answered != list(range(stream.sent)):
        problems.append(
            f"stream: {stream.sent} frames sent, answers {len(stream.answered)} (not 0..n-1 once)"
        )
    if sum(1 for frames in served.values() if frames) < 2:
        problems.append("the stream never moved to another replica: the drain path was not exercised")
    if tally.ok < args.clients * 5 or stream.sent < 20:
        problems.append("too little traffic to show anything")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.deploy.rollout", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", type=Path, help="an exported graph (default: export random:b0)")
    parser.add_argument("--replicas", type=int, default=2, choices=(1, 2))
    parser.add_argument("--clients", type=int, default=8, help="REST clients")
    parser.add_argument("--pause", type=float, default=2.0, help="preStop pause, s (the manifests: 10)")
    parser.add_argument("--graceful-timeout", type=float, default=30.0, help="SEGFORMER_GRACEFUL_TIMEOUT_S")
    parser.add_argument("--settle", type=float, default=3.0, help="load before and after the rollout, s")
    parser.add_argument("--startup-timeout", type=float, default=90.0)
    parser.add_argument(
        "--skip-drain", action="store_true", help="negative control: no drain, no pause (expect failures)"
    )
    parser.add_argument("--workdir", type=Path, help="keep logs and configs here (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="deploy-check-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        problems = run(args, workdir)
    for problem in problems[:50]:
        say(f"FAIL: {problem}")
    say("PASS: rolling update lost nothing" if not problems else f"FAIL: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
