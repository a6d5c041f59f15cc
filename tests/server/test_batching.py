"""Dynamic batching under concurrency, and overload: a full queue answers 503 and the server recovers."""

from __future__ import annotations

import asyncio
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from server.settings import usable_cores
from tests.server.conftest import MAX_QUEUE_SIZE
from tests.server.live import Served, batches_over_one, image_bytes, metric_value, png_mask


async def _burst(url: str, bodies: list[bytes], params: dict[str, str]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        return await asyncio.gather(
            *[
                client.post(
                    f"{url}/v1/segment", params=params, content=b, headers={"Content-Type": "image/png"}
                )
                for b in bodies
            ]
        )


def _post_native(url: str, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/segment?mode=native", content=body, headers={"Content-Type": "image/png"}, timeout=120
    )


def test_sixteen_concurrent_clients_batch(served: Served) -> None:
    before = batches_over_one(served.metrics())
    bodies = [image_bytes(128, 128, "PNG", seed=i) for i in range(16)]
    answers = asyncio.run(_burst(served.url, bodies, {"mode": "native"}))
    assert [a.status_code for a in answers] == [200] * 16
    # every client gets its own mask back, not a neighbour's from the same batch
    alone = [png_mask(a.content) for a in asyncio.run(_burst(served.url, bodies[:2], {"mode": "native"}))]
    assert np.array_equal(png_mask(answers[0].content), alone[0])
    assert np.array_equal(png_mask(answers[1].content), alone[1])
    assert batches_over_one(served.metrics()) > before


def test_flood_gets_503_and_recovers(served: Served) -> None:
    bodies = [image_bytes(256, 256, "PNG", seed=100 + i) for i in range(4 * MAX_QUEUE_SIZE)]
    answers = asyncio.run(_burst(served.url, bodies, {"mode": "native"}))
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 503}, statuses
    rejected = [a for a in answers if a.status_code == 503]
    assert rejected, "a flood four times the queue size was fully accepted"
    assert statuses.count(200) >= MAX_QUEUE_SIZE
    assert all(a.json()["error"] == "queue_full" and int(a.headers["retry-after"]) >= 1 for a in rejected)
    text = served.metrics()
    assert metric_value(text, "segformer_errors_total", kind="queue_full") >= len(rejected)
    assert metric_value(text, "segformer_queue_depth") == 0
    assert metric_value(text, "segformer_in_flight_requests") == 0
    again = asyncio.run(_burst(served.url, bodies[:4], {"mode": "native"}))
    assert [a.status_code for a in again] == [200] * 4


def test_client_disconnect_drops_the_request(served: Served) -> None:
    """A client that hangs up while its request waits is answered 499 in the metrics; the server goes on."""

    body = image_bytes(480, 640, "PNG", seed=9)
    before = metric_value(served.metrics(), "segformer_requests_total", endpoint="/v1/segment", status="499")
    # Keep the session busy with slow native-mode work of another batch key, so that the victim is certainly
    # still queued when its client hangs up, however fast this machine is.
    # (distinct sizes: distinct output sizes, so six batches one after the other)
    blockers = [image_bytes(1024 - 16 * i, 1024, "PNG", seed=10 + i) for i in range(6)]
    with ThreadPoolExecutor(max_workers=len(blockers)) as pool:
        busy = [pool.submit(_post_native, served.url, b) for b in blockers]
        time.sleep(0.2)  # the blockers are decoded and queued or running
        head = "POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        head += f"Content-Length: {len(body)}\r\n\r\n"
        with socket.create_connection(("127.0.0.1", served.port or 0)) as sock:
            sock.sendall(head.encode() + body)
            time.sleep(0.3)  # read and queued behind the blockers
        assert [f.result().status_code for f in busy] == [200] * len(blockers)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        text = served.metrics()
        if metric_value(text, "segformer_requests_total", endpoint="/v1/segment", status="499") > before:
            break
        time.sleep(0.1)
    assert metric_value(text, "segformer_requests_total", endpoint="/v1/segment", status="499") > before
    assert metric_value(text, "segformer_errors_total", kind="client_disconnected") >= 1
    good = httpx.post(
        f"{served.url}/v1/segment?mode=native",
        content=body,
        headers={"Content-Type": "image/png"},
        timeout=60,
    )
    assert good.status_code == 200


def test_lone_requests_get_the_solo_session_and_bursts_the_lanes(served: Served) -> None:
    model = httpx.get(f"{served.url}/v1/model", timeout=30).json()
    batching = model["batching"]
    if model["runtime"] == "openvino":  # one all-core stream, no solo (docs/openvino.md): every run a lane's
        assert batching["solo_session_threads"] == 0 and batching["sessions"] == 1
        assert batching["intra_op_threads"] == usable_cores()
        before = metric_value(served.metrics(), "segformer_session_runs_total", session="lane")
        assert _post_native(served.url, image_bytes(64, 96, "PNG", seed=0)).status_code == 200
        assert metric_value(served.metrics(), "segformer_session_runs_total", session="lane") == before + 1
        return
    if not batching["solo_session_threads"]:
        pytest.skip("one usable core: the pool has no solo session")
    assert batching["sessions"] == 2 and batching["intra_op_threads"] >= 1

    def runs() -> tuple[float, float]:
        text = served.metrics()
        return tuple(metric_value(text, "segformer_session_runs_total", session=k) for k in ("solo", "lane"))

    solo, lane = runs()
    for seed in range(3):  # one at a time: each has the server to itself
        assert _post_native(served.url, image_bytes(64, 96, "PNG", seed=seed)).status_code == 200
    assert runs() == (solo + 3, lane)
    bodies = [image_bytes(64 + 32 * (i % 4), 96, "PNG", seed=i) for i in range(8)]  # 4 batch keys
    assert [a.status_code for a in asyncio.run(_burst(served.url, bodies, {"mode": "native"}))] == [200] * 8
    assert runs()[1] > lane
