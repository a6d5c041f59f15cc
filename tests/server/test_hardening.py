"""Hardening (issue #12), from outside as an attacker or a careless client would: raw loopback sockets for
slow and malformed HTTP, a flood for shedding, and the documented answer for every edge.

One server for the module with short timeouts and small limits, so every case takes about a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server.live import Served, image_bytes, metric_value
from tests.server.test_errors import png_header_only

HEADER_TIMEOUT_S = 1.0
BODY_IDLE_S = 0.5
BODY_TIMEOUT_S = 2.0
KEEP_ALIVE_S = 1.0
MAX_HEADER = 8192
MAX_BODY = 1024 * 1024
MAX_PIXELS = 4_000_000
QUEUE = 2
GOOD = image_bytes(48, 64, "PNG", seed=3)
UPLOAD = b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
JPEG = image_bytes(200, 200, "JPEG")
PYTHON_EXCEPTION = re.compile(r"\b[A-Z]\w*(Error|Exception)\b")


@pytest.fixture(scope="module")
def guarded(random_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(
        tmp_path_factory.mktemp("guarded"),
        "--model", str(random_b0_onnx),
        "--header-timeout-s", str(HEADER_TIMEOUT_S),
        "--body-idle-timeout-s", str(BODY_IDLE_S),
        "--body-timeout-s", str(BODY_TIMEOUT_S),
        "--keep-alive-timeout-s", str(KEEP_ALIVE_S),
        "--max-header-bytes", str(MAX_HEADER),
        "--max-body-bytes", str(MAX_BODY),
        "--max-image-pixels", str(MAX_PIXELS),
        "--max-queue-size", str(QUEUE),
        "--max-batch-size", "1",
        "--max-request-timeout-ms", "20000",
        "--no-docs",
    )  # fmt: skip
    try:
        yield server.wait_ready()
    finally:
        assert server.stop() == 0, server.log_tail()


class Raw:
    """One raw loopback connection: send bytes, read until the server closes (bounded in time)."""

    def __init__(self, served: Served) -> None:
        assert served.port is not None
        self.sock = socket.create_connection(("127.0.0.1", served.port), timeout=10)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def until_closed(self, limit_s: float = 10.0) -> tuple[bytes, float]:
        """Everything the server sends until it closes the connection, and how long that took."""
        start, data = time.monotonic(), b""
        self.sock.settimeout(limit_s)
        try:
            while chunk := self.sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
        finally:
            self.sock.close()
        return data, time.monotonic() - start


def status_and_json(answer: bytes) -> tuple[int, str]:
    """The status code and the JSON ``error`` kind of a raw HTTP answer (asserts it is JSON)."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), answer[:400]
    found = re.search(rb'"error":\s*"(\w+)"', body)
    assert found, answer[:400]
    return int(head.split()[1]), found.group(1).decode()


def test_idle_connection_is_closed(guarded: Served) -> None:
    data, took = Raw(guarded).until_closed()
    assert data == b"" and HEADER_TIMEOUT_S * 0.8 < took < HEADER_TIMEOUT_S + 3


def test_slow_headers_get_408_and_are_closed(guarded: Served) -> None:
    raw = Raw(guarded)
    raw.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # ... and the rest never comes
    data, took = raw.until_closed()
    assert status_and_json(data) == (408, "request_timeout")
    assert took < HEADER_TIMEOUT_S + 3
    assert (
        metric_value(guarded.metrics(), "segformer_requests_total", status="408", endpoint="unmatched") >= 1
    )


def test_keep_alive_connection_closes_when_idle(guarded: Served) -> None:
    raw = Raw(guarded)
    raw.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    data, took = raw.until_closed()
    assert data.startswith(b"HTTP/1.1 200") and took < KEEP_ALIVE_S + 3


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (4 * MAX_HEADER) + b"\r\n\r\n",  # one read
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (8 * 1024 * 1024) + b"\r\n\r\n",  # many
        b"GET /healthz?" + b"q" * (2 * MAX_HEADER) + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # a huge URL
    ],
    ids=["header", "8MB-header", "url"],
)
def test_oversized_request_head_gets_431(guarded: Served, request_bytes: bytes) -> None:
    raw = Raw(guarded)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # refused while still sending
        raw.send(request_bytes)
    data, _ = raw.until_closed()
    if data:
        assert status_and_json(data) == (431, "headers_too_large")
    assert httpx.get(f"{guarded.url}/healthz", timeout=10).status_code == 200


@pytest.mark.parametrize(
    "request_bytes",
    [
        UPLOAD + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        UPLOAD + b"Content-Length: -1\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
    ],
    ids=["length-and-chunked", "negative-length", "garbage"],
)
def test_malformed_http_gets_json_400_and_close(guarded: Served, request_bytes: bytes) -> None:
    raw = Raw(guarded)
    raw.send(request_bytes)
    data, took = raw.until_closed()
    assert status_and_json(data) == (400, "bad_request")
    assert b"connection: close" in data.lower() and took < 3
    assert metric_value(guarded.metrics(), "segformer_errors_total", kind="bad_request") >= 1


def test_body_after_an_early_answer_is_not_taken_for_headers(guarded: Served) -> None:
    """A 415 comes before the body is read; the rest of a large body is discarded, not taken for a
    header flood (431), and the connection serves its next request."""
    size = 4 * MAX_HEADER
    raw = Raw(guarded)
    raw.send(b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n")
    raw.send(b"Content-Length: %d\r\n\r\n" % size)
    raw.sock.settimeout(10)
    first = raw.sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 415")
    raw.send(b"x" * size + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    rest, _ = raw.until_closed()
    answers = re.findall(rb"HTTP/1\.1 (\d+)", first + rest)
    assert answers == [b"415", b"200"] and (first + rest).endswith(b'{"status":"ok"}'), rest[-300:]


def test_slow_body_gets_408(guarded: Served) -> None:
    raw = Raw(guarded)
    raw.send(UPLOAD + b"Content-Length: 999\r\n\r\n")
    raw.send(b"abc")  # then a pause longer than --body-idle-timeout-s
    data, took = raw.until_closed()
    assert status_and_json(data) == (408, "request_timeout") and b"paused" in data
    assert took < BODY_IDLE_S + 3


def test_trickled_body_gets_408_at_the_body_deadline(guarded: Served) -> None:
    raw = Raw(guarded)
    raw.send(UPLOAD + b"Content-Length: 999\r\n\r\n")
    start, data = time.monotonic(), b""
    raw.sock.settimeout(BODY_IDLE_S / 3)  # one byte per third of the idle timeout: never idle too long
    while time.monotonic() - start < BODY_TIMEOUT_S + 5 and b"\r\n\r\n" not in data:
        try:
            raw.send(b"x")
            data += raw.sock.recv(65536) or b"\r\n\r\n"
        except TimeoutError:
            continue
        except OSError:
            break
    took = time.monotonic() - start
    rest, _ = raw.until_closed()
    assert (
        status_and_json(data + rest) == (408, "request_timeout") and b"did not arrive within" in data + rest
    )
    assert BODY_TIMEOUT_S * 0.8 < took < BODY_TIMEOUT_S + 4


def test_413_closes_the_connection_without_reading_the_rest(guarded: Served) -> None:
    raw = Raw(guarded)
    raw.send(UPLOAD + b"Transfer-Encoding: chunked\r\n\r\n")
    sent, piece = 0, b"10000\r\n" + b"\0" * 0x10000 + b"\r\n"
    with pytest.raises(OSError):  # reset: the server closed; 200 MB never go through
        while sent < 200 * 1024 * 1024:
            raw.send(piece)
            sent += 0x10000
    assert sent < 64 * 1024 * 1024  # the limit is 1 MiB; the rest is socket buffers
    data, _ = raw.until_closed()
    if data:  # the answer can be lost to the reset, but when it arrives it is the 413
        assert status_and_json(data) == (413, "body_too_large")


def test_client_disconnect_mid_upload_is_499_without_traceback(guarded: Served) -> None:
    before = guarded.metrics()
    raw = Raw(guarded)
    raw.send(UPLOAD + b"Content-Length: 99999\r\n\r\n")
    raw.send(b"\x89PNG" + b"\0" * 1000)
    raw.sock.close()
    end = time.monotonic() + 10
    count = 0.0
    while time.monotonic() < end and count < 1:
        after = guarded.metrics()
        count = metric_value(after, "segformer_requests_total", status="499") - metric_value(
            before, "segformer_requests_total", status="499"
        )
        time.sleep(0.1)
    assert count == 1
    assert metric_value(after, "segformer_requests_total", status="500") == metric_value(
        before, "segformer_requests_total", status="500"
    )
    assert metric_value(after, "segformer_errors_total", kind="client_disconnected") >= 1
    assert "Traceback" not in guarded.log_tail(200) and "ClientDisconnect" not in guarded.log_tail(200)


async def _flood(url: str, count: int) -> list[int]:
    async with httpx.AsyncClient(timeout=60) as client:
        answers = await asyncio.gather(
            *(
                client.post(f"{url}/v1/segment", content=GOOD, headers={"Content-Type": "image/png"})
                for _ in range(count)
            )
        )
    return [a.status_code for a in answers]


def test_flood_sheds_before_decoding(guarded: Served) -> None:
    before = guarded.metrics()
    statuses = asyncio.run(_flood(guarded.url, 48))
    after = guarded.metrics()
    decodes = metric_value(after, "segformer_stage_duration_seconds_count", stage="decode") - metric_value(
        before, "segformer_stage_duration_seconds_count", stage="decode"
    )
    assert set(statuses) <= {200, 503} and statuses.count(503) > 0, statuses
    assert decodes == statuses.count(200)  # a shed request cost no decode


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({"timeout_ms": "inf"}, {}),
        ({"timeout_ms": "1e309"}, {}),
        ({"timeout_ms": "nan"}, {}),
        ({}, {"X-Request-Timeout-Ms": "1e309"}),
        ({}, {"X-Request-Timeout-Ms": "inf"}),
    ],
)
def test_infinite_timeouts_are_400(guarded: Served, params: dict[str, str], headers: dict[str, str]) -> None:
    answer = httpx.post(
        f"{guarded.url}/v1/segment",
        params=params,
        content=GOOD,
        headers={"Content-Type": "image/png", **headers},
        timeout=30,
    )
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_argument"


def test_huge_finite_timeout_is_clamped_and_served(guarded: Served) -> None:
    answer = httpx.post(
        f"{guarded.url}/v1/segment",
        params={"timeout_ms": "1e300"},
        content=GOOD,
        headers={"Content-Type": "image/png"},
        timeout=30,
    )
    assert answer.status_code == 200


def test_bomb_error_quotes_the_configured_limits(guarded: Served) -> None:
    answer = httpx.post(
        f"{guarded.url}/v1/segment",
        content=png_header_only(15000, 15000),  # 225 Mpx: Pillow's own bomb check fires first
        headers={"Content-Type": "image/png"},
        timeout=30,
    )
    assert answer.status_code == 400 and answer.json()["error"] == "image_too_large"
    detail = answer.json()["detail"]
    assert f"{MAX_PIXELS} pixels in total" in detail and "178956970" not in detail


def test_error_messages_name_no_python_exceptions(guarded: Served) -> None:
    for body in (JPEG[:600], JPEG[: len(JPEG) // 2], image_bytes(64, 64, "PNG")[:-40], b"\x89PNG\r\n\x1a\n"):
        answer = httpx.post(
            f"{guarded.url}/v1/segment", content=body, headers={"Content-Type": "image/png"}, timeout=30
        )
        assert answer.status_code == 400 and answer.json()["error"] == "corrupt_image"
        assert not PYTHON_EXCEPTION.search(answer.json()["detail"]), answer.json()
    truncated = httpx.post(
        f"{guarded.url}/v1/segment",
        content=JPEG[: len(JPEG) // 2],
        headers={"Content-Type": "image/jpeg"},
        timeout=30,
    )
    assert "truncated" in truncated.json()["detail"]


def test_model_shows_no_filesystem_path_and_docs_can_be_off(guarded: Served, random_b0_onnx: Path) -> None:
    for path in ("/v1/model", "/v1/models", "/v1/models/segformer-b0-random"):
        text = httpx.get(f"{guarded.url}{path}", timeout=10).text
        assert str(random_b0_onnx.parent) not in text and random_b0_onnx.name not in text, text
    assert "source_sha256" in httpx.get(f"{guarded.url}/v1/model", timeout=10).json()
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert httpx.get(f"{guarded.url}{path}", timeout=10).status_code == 404
