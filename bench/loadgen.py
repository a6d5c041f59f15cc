"""Closed-loop load generator, run as its own process: ``python -m bench.loadgen --target rest ...``.

N client threads each send one request, wait for the answer, and send the next (closed loop). The
measurement window opens once every client has had one answer (the queue is then in steady state, or
after ``--max-warmup`` seconds) and lasts ``--duration`` seconds; requests completing inside it count.
Clients are deliberately thin (``http.client`` keep-alive connections, pre-loaded JPEG bytes, one gRPC
channel per client) and the generator reports its own CPU, because it shares the machine's cores with
the server under test. With ``--pid`` it also samples the server's process tree: CPU and peak RSS.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.clients import make_client
from bench.common import TreeMonitor, load_images, summarize, write_json


class _Shared:
    def __init__(self, clients: int) -> None:
        self.lock = threading.Lock()
        self.answered: set[int] = set()
        self.all_answered = threading.Event()
        self.clients = clients
        self.stop_at = float("inf")
        self.records: list[tuple[float, float, bool]] = []  # (end time, latency s, ok)
        self.error_samples: list[str] = []


def _worker(index: int, send: Callable[[bytes], None], images: list[bytes], shared: _Shared) -> None:
    turn = index
    while time.perf_counter() < shared.stop_at:
        body = images[turn % len(images)]
        turn += 1
        start = time.perf_counter()
        ok = True
        try:
            send(body)
        except Exception as exc:  # every failure counts as an error; the client reconnects by itself
            ok = False
            with shared.lock:
                if len(shared.error_samples) < 5:
                    shared.error_samples.append(repr(exc)[:300])
        end = time.perf_counter()
        with shared.lock:
            shared.records.append((end, end - start, ok))
            shared.answered.add(index)
            if len(shared.answered) == shared.clients:
                shared.all_answered.set()


def run_load(
    target: str,
    url: str,
    concurrency: int,
    duration: float,
    max_warmup: float,
    images: list[bytes],
    pid: int | None,
    min_answers: int = 5,
    keep_latencies: bool = False,
) -> dict[str, object]:
    """Drive ``url`` with ``concurrency`` closed-loop clients; the measured window's summary as a dict.

    The window is extended (up to 4× ``duration``) until at least ``min_answers`` answers came in.
    ``keep_latencies`` adds every answer's latency (ms) to ``extra`` (to merge several generators).
    """
    shared = _Shared(concurrency)
    senders = [make_client(target, url) for _ in range(concurrency)]
    monitor = TreeMonitor(pid) if pid else None
    threads = [
        threading.Thread(target=_worker, args=(i, sender.send, images, shared), daemon=True)
        for i, sender in enumerate(senders)
    ]
    for thread in threads:
        thread.start()
    shared.all_answered.wait(timeout=max_warmup)
    own0, tree0 = _own_cpu(), monitor.sample() if monitor else 0.0
    start = time.perf_counter()
    shared.stop_at = start + duration
    while time.perf_counter() < shared.stop_at:
        time.sleep(0.25)
        if monitor:
            monitor.sample()
        closing = shared.stop_at - time.perf_counter() < 0.5  # decide before the clients see the deadline
        if closing and _answers_since(shared, start) < min_answers:
            shared.stop_at = min(shared.stop_at + 1.0, start + 4 * duration)  # too few answers: extend
    end = shared.stop_at
    own1, tree1 = _own_cpu(), monitor.sample() if monitor else 0.0
    for thread in threads:  # drain: leave the server idle for whatever runs next
        thread.join(timeout=120.0)
    for sender in senders:
        sender.close()
    window = [(lat, ok) for (t, lat, ok) in shared.records if start <= t <= end]
    good = [lat for lat, ok in window if ok]
    result = summarize(
        target,
        concurrency,
        good,
        end - start,
        errors=sum(1 for _, ok in window if not ok),
        cpu_cores=(tree1 - tree0) / (end - start) if monitor else None,
        peak_rss_mb=monitor.peak_rss / 2**20 if monitor else None,
        client_cpu_cores=(own1 - own0) / (end - start),
        extra={"warmed_up": shared.all_answered.is_set(), "error_samples": shared.error_samples},
    )
    if keep_latencies:
        result.extra["latencies_ms"] = [round(lat * 1000.0, 3) for lat in good]
    return result.__dict__


def _answers_since(shared: _Shared, start: float) -> int:
    with shared.lock:
        return sum(1 for t, _, _ in shared.records if t >= start)


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", choices=["rest", "grpc", "grpc-stream", "triton"], required=True)
    parser.add_argument("--url", required=True, help="http://host:port for rest/triton, host:port for grpc")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--max-warmup", type=float, default=30.0)
    parser.add_argument("--pid", type=int, default=None, help="server pid: sample its process tree")
    parser.add_argument("--keep-latencies", action="store_true", help="every latency in the JSON too")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("images", nargs="*", type=Path, help="JPEG files (synthetic images when none)")
    args = parser.parse_intermixed_args(argv)
    images = load_images(args.images)
    write_json(
        args.out,
        run_load(
            args.target,
            args.url,
            args.concurrency,
            args.duration,
            args.max_warmup,
            images,
            args.pid,
            keep_latencies=args.keep_latencies,
        ),
    )


if __name__ == "__main__":
    main()
