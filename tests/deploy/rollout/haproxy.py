"""haproxy (Debian's package) in front of the replicas, health-checking ``/readyz``, driven through its
runtime API the way Kubernetes drives a Service's endpoints.

Two frontends on loopback: REST (HTTP/1.1) and gRPC (HTTP/2 cleartext, ``proto h2`` on both sides).
Each backend has ``SLOTS`` server slots, always health-checked; a free slot points at a closed port
(so it is DOWN). A replica is put into a slot by pointing it at the replica's ports (``set server ...
addr``): it takes traffic once ``rise`` checks of /readyz pass (a pod joins the endpoints when ready);
``drain`` takes it out of rotation while it finishes what it holds (a terminating endpoint: ready=false,
serving=true); once it has exited the slot points at the closed port again (the endpoint is gone).
``retries 0``: haproxy never replays a request, so a lost request shows as a failure instead of hiding.
"""

from __future__ import annotations

import csv
import io
import shutil
import socket
import subprocess
import time
from pathlib import Path

SLOTS = 4
CLOSED_PORT = 1  # nothing listens there (privileged): a free slot's checks fail
CONFIG = """\
global
    stats socket {socket} mode 600 level admin
    maxconn 1024

defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout check 2s
    retries 0
    default-server inter {inter_ms}ms fall 2 rise 2

frontend rest_in
    bind 127.0.0.1:{rest_port}
    default_backend rest

frontend grpc_in
    bind 127.0.0.1:{grpc_port} proto h2
    default_backend grpc

backend rest
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz
    http-check expect status 200
{rest_servers}

backend grpc
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz
    http-check expect status 200
{grpc_servers}
"""


class HAProxy:
    """``haproxy -db`` with a runtime socket; slots ``s1``..``sN`` in both backends, all in maintenance."""

    def __init__(self, workdir: Path, rest_port: int, grpc_port: int, inter_ms: int = 250) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        self.socket = workdir / "haproxy.sock"
        self.socket.unlink(missing_ok=True)
        self.rest_url = f"http://127.0.0.1:{rest_port}"
        self.grpc_address = f"127.0.0.1:{grpc_port}"
        slots = [f"s{i}" for i in range(1, SLOTS + 1)]
        # a grpc slot is health-checked on its pod's REST port (check-port), over HTTP/1.1
        config = CONFIG.format(
            socket=self.socket,
            inter_ms=inter_ms,
            rest_port=rest_port,
            grpc_port=grpc_port,
            rest_servers="\n".join(f"    server {s} 127.0.0.1:{CLOSED_PORT} check" for s in slots),
            grpc_servers="\n".join(
                f"    server {s} 127.0.0.1:{CLOSED_PORT} proto h2 check port {CLOSED_PORT} check-proto h1"
                for s in slots
            ),
        )
        self.config = workdir / "haproxy.cfg"
        self.config.write_text(config)
        check = subprocess.run([binary, "-c", "-f", str(self.config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy config rejected:\n{check.stdout}{check.stderr}")
        self.log = (workdir / "haproxy.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, "-db", "-f", str(self.config)], stdout=self.log, stderr=self.log
        )
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not start: {(workdir / 'haproxy.log').read_text()}")
            time.sleep(0.05)

    def command(self, line: str, check: bool = True) -> str:
        """One runtime API command; ``check``: an answer that is an error message raises."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(self.socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        answer = b"".join(chunks).decode()
        if check and any(word in answer.lower() for word in ("unknown", "error", "invalid", "require")):
            raise RuntimeError(f"haproxy: {line!r} -> {answer.strip()}")
        return answer

    def stats(self) -> dict[tuple[str, str], dict[str, str]]:
        """``show stat``: (backend, server) -> its row (``status``: UP, DOWN, DRAIN, MAINT, ...)."""
        text = self.command("show stat", check=False).lstrip("# ")
        return {(row["pxname"], row["svname"]): row for row in csv.DictReader(io.StringIO(text))}

    def free_slot(self) -> str:
        stats = self.stats()
        for slot in (f"s{i}" for i in range(1, SLOTS + 1)):
            if stats["rest", slot]["addr"].endswith(f":{CLOSED_PORT}"):
                return slot
        raise RuntimeError("no free haproxy slot")

    def wait_free_slots_down(self, timeout: float = 10) -> None:
        """At start haproxy counts every server UP until its checks fail."""
        for slot in (f"s{i}" for i in range(1, SLOTS + 1)):
            self.wait_status(slot, "DOWN", timeout)

    def point(self, slot: str, rest_port: int, grpc_port: int) -> None:
        """Slot -> a replica's ports (a grpc slot is checked on its pod's REST port, over HTTP/1.1)."""
        self.command(f"set server rest/{slot} addr 127.0.0.1 port {rest_port}")
        self.command(f"set server grpc/{slot} addr 127.0.0.1 port {grpc_port}")
        self.command(f"set server grpc/{slot} check-port {rest_port}")

    def add(self, slot: str, rest_port: int, grpc_port: int) -> None:
        """A new pod's endpoint: it takes traffic once its readiness check passes ``rise`` times."""
        self.point(slot, rest_port, grpc_port)

    def remove(self, slot: str, timeout: float = 10) -> None:
        """The endpoint of a pod that has exited: the slot is free again (and DOWN)."""
        self.wait_status(slot, "DOWN", timeout)  # its checks failed: no traffic when drain ends
        self.point(slot, CLOSED_PORT, CLOSED_PORT)
        self.set_state(slot, "ready")

    def status(self, slot: str) -> tuple[str, str]:
        stats = self.stats()
        return stats["rest", slot]["status"], stats["grpc", slot]["status"]

    def wait_status(self, slot: str, wanted: str, timeout: float) -> float:
        """Seconds until both backends report ``wanted`` for ``slot``."""
        start = time.monotonic()
        while not all(status.startswith(wanted) for status in self.status(slot)):
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"haproxy {slot}: {self.status(slot)} after {timeout} s, wanted {wanted}")
            time.sleep(0.05)
        return time.monotonic() - start

    def set_state(self, slot: str, state: str) -> None:
        for backend in ("rest", "grpc"):
            self.command(f"set server {backend}/{slot} state {state}")

    def sessions(self, backend: str) -> dict[str, int]:
        """Requests (REST) or streams (gRPC) each slot has been given so far."""
        return {
            s: int(row["stot"] or 0)
            for (b, s), row in self.stats().items()
            if b == backend and s[1:].isdigit()
        }

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.log.close()
