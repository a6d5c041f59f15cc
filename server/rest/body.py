"""Reading an image out of a REST request: media type, size limits (header and streamed), multipart."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from server import errors

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


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) a declared or streamed size above ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise errors.body_too_large(limit)
        except ValueError:
            raise errors.invalid_argument(f"invalid Content-Length {declared!r}") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.body_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _once(data: bytes) -> AsyncGenerator[bytes, None]:
    yield data


async def _multipart_image(request: Request, body: bytes) -> bytes:
    parser = MultiPartParser(request.headers, _once(body), max_files=4, max_fields=16)
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


async def read_image_bytes(request: Request, limit: int) -> bytes:
    """The image bytes of a raw-body or multipart request (415 for other content types)."""
    kind = media_type(request)
    if kind not in IMAGE_TYPES and kind != MULTIPART:
        raise errors.unsupported_media_type(kind or "(none)")
    body = await read_limited(request, limit)
    if kind == MULTIPART:
        return await _multipart_image(request, body)
    return body
