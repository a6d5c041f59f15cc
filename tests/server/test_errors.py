"""Every bad input gets its status as JSON ``{"error", "detail"}``, and the server keeps serving."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from tests.server.conftest import MAX_BODY_BYTES
from tests.server.live import Served, image_bytes, metric_value

GOOD = image_bytes(64, 96, "PNG", seed=11)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (a decompression bomb's signature)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def flat_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 80, 120)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def post(
    served: Served, content: bytes | Iterator[bytes], content_type: str, **params: str
) -> httpx.Response:
    return httpx.post(
        f"{served.url}/v1/segment",
        params={"mode": "native", **params},
        content=content,
        headers={"Content-Type": content_type},
        timeout=60,
    )


def chunks(total: int) -> Iterator[bytes]:
    """A body sent chunked (no Content-Length), so only the streamed size can be checked."""
    for _ in range(total // 65536):
        yield b"\0" * 65536


BAD_INPUTS = {
    "too_large_declared": (lambda: b"\0" * (MAX_BODY_BYTES + 1), "image/png", 413, "body_too_large"),
    "too_large_streamed": (lambda: chunks(MAX_BODY_BYTES + 65536 * 2), "image/png", 413, "body_too_large"),
    "unsupported_type": (lambda: GOOD, "text/plain", 415, "unsupported_media_type"),
    "no_type": (lambda: GOOD, "", 415, "unsupported_media_type"),
    "garbage": (lambda: b"definitely not an image", "image/png", 400, "corrupt_image"),
    "empty": (lambda: b"", "image/jpeg", 400, "corrupt_image"),
    "truncated_jpeg": (lambda: image_bytes(200, 200, "JPEG")[:600], "image/jpeg", 400, "corrupt_image"),
    "gif_not_allowed": (lambda: image_bytes(32, 32, "GIF"), "image/png", 400, "corrupt_image"),
    "absurd_dims": (lambda: png_header_only(100_000, 100_000), "image/png", 400, "image_too_large"),
    # a real, valid 2500x2000 PNG (about 20 kB) above the 4 Mpx limit: rejected from the header
    "bomb": (lambda: flat_png(2500, 2000), "image/png", 400, "image_too_large"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_then_good(served: Served, case: str) -> None:
    make, content_type, status, kind = BAD_INPUTS[case]
    answer = post(served, make(), content_type)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == kind and answer.json()["detail"]
    good = post(served, GOOD, "image/png")
    assert good.status_code == 200, good.text


def test_bad_parameters(served: Served) -> None:
    for params in ({"format": "gif"}, {"mode": "tiny"}, {"timeout_ms": "-5"}):
        answer = post(served, GOOD, "image/png", **params)
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_argument", answer.text
    no_field = httpx.post(
        f"{served.url}/v1/segment", files={"other": ("a.png", GOOD, "image/png")}, timeout=60
    )
    assert no_field.status_code == 400 and no_field.json()["error"] == "invalid_argument"


def test_deadlines(served: Served) -> None:
    # expires before inference
    answer = post(served, GOOD, "image/png", timeout_ms="0.01")
    assert answer.status_code == 504 and answer.json()["error"] == "deadline_exceeded"
    # expires while the full-size inference runs (header form)
    slow = image_bytes(480, 640, "JPEG", seed=5)
    answer = httpx.post(
        f"{served.url}/v1/segment",
        content=slow,
        headers={"Content-Type": "image/jpeg", "X-Request-Timeout-Ms": "30"},
        timeout=60,
    )
    assert answer.status_code == 504, answer.text
    assert post(served, GOOD, "image/png").status_code == 200
    text = served.metrics()
    assert metric_value(text, "segformer_errors_total", kind="deadline_exceeded") >= 2
    assert metric_value(text, "segformer_requests_total", endpoint="/v1/segment", status="504") >= 2
