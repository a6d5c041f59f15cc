"""Reading an image out of a REST request: media type, size and time limits, multipart.

A body is refused with 413 when its declared or streamed size passes ``--max-body-bytes``, and with 408
when it takes longer than ``--body-timeout-s`` in all or pauses longer than ``--body-idle-timeout-s``
between two pieces (slow-loris uploads). Both answers close the connection (``server/rest``), so the
rest of a refused body is never read. A client that goes away mid-upload is a 499, not an error. A
multipart body is parsed in memory, its image part too (never spooled to disk).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from server import errors
from server.settings import Settings

#: Raw-body content types accepted by ``POST /v1/segment`` (the decoder sniffs the actual format).
IMAGE_TYPES = frozenset(
    {
        "image/jpeg",
        "image/jpg",
        "image/png",
        "image/webp",
        "image/bmp",
        "image/x-ms-bmp",
        "image/tiff",
        "application/octet-stream",
    }
)
MULTIPART = "multipart/form-data"
FIELD = "image"


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True)
class BodyLimits:
    """How large a body may be (bytes) and how long it may take (seconds, in all and between pieces)."""

    max_bytes: int
    timeout_s: float = 120.0
    idle_timeout_s: float = 10.0

    @classmethod
    def of(cls, settings: Settings) -> BodyLimits:
        """``--max-body-bytes``, ``--body-timeout-s`` and ``--body-idle-timeout-s``."""
        return cls(settings.max_body_bytes, settings.body_timeout_s, settings.body_idle_timeout_s)


async def read_limited(request: Request, limits: BodyLimits) -> bytes:
    """The request body within ``limits``: 413 above the size (declared or streamed), 408 too slow,
    499 (``client_disconnected``) when the client went away mid-upload."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limits.max_bytes:
                raise errors.body_too_large(limits.max_bytes)
        except ValueError:
            raise errors.invalid_argument(f"invalid Content-Length {declared!r}") from None
    chunks: list[bytes] = []
    size = 0
    end = time.monotonic() + limits.timeout_s
    stream = aiter(request.stream())
    while True:
        wait = min(limits.idle_timeout_s, end - time.monotonic())
        try:
            async with asyncio.timeout(max(0.0, wait)):
                chunk = await anext(stream)
        except StopAsyncIteration:
            return b"".join(chunks)
        except TimeoutError:
            raise errors.request_timeout(_slow(limits, end)) from None
        except ClientDisconnect:
            raise errors.client_disconnected("the client closed the connection during the upload") from None
        size += len(chunk)
        if size > limits.max_bytes:
            raise errors.body_too_large(limits.max_bytes)
        chunks.append(chunk)


def _slow(limits: BodyLimits, end: float) -> str:
    if time.monotonic() >= end:
        return f"the request body did not arrive within {limits.timeout_s:g} s"
    return f"the request body paused for more than {limits.idle_timeout_s:g} s"


async def _once(data: bytes) -> AsyncGenerator[bytes, None]:
    yield data


async def _multipart_image(request: Request, body: bytes, limits: BodyLimits) -> bytes:
    parser = MultiPartParser(request.headers, _once(body), max_files=4, max_fields=16)
    # the body is in memory already (within --max-body-bytes): its file part stays there too, where
    # Starlette would spool any part above 1 MB (a phone photo) to a file in /tmp and read it back
    parser.spool_max_size = limits.max_bytes
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise errors.invalid_argument(f"malformed multipart body: {exc.message}") from None
    try:
        part = form.get(FIELD)
        if not isinstance(part, UploadFile):
            raise errors.invalid_argument(f"multipart body has no file field {FIELD!r}")
        return await part.read()
    finally:
        await form.close()


async def read_image_bytes(request: Request, limits: BodyLimits) -> bytes:
    """The image bytes of a raw-body or multipart request (415 for other content types)."""
    kind = media_type(request)
    if kind not in IMAGE_TYPES and kind != MULTIPART:
        raise errors.unsupported_media_type(kind or "(none)")
    body = await read_limited(request, limits)
    if kind == MULTIPART:
        return await _multipart_image(request, body, limits)
    return body
