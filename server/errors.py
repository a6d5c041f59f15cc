"""One error type for everything a client can be told; its HTTP status is mapped once per transport.

REST renders it as ``{"error": kind, "detail": text}`` with ``status``; gRPC maps ``status`` to a
``grpc.StatusCode`` in ``server/grpc/``.
"""

from __future__ import annotations

#: the most characters of a caller's name (model, version) echoed back in an error
SHOWN_CHARS = 64


class ServeError(Exception):
    """A request failed for a reason the client should see.

    ``status`` is the HTTP status, ``error`` a short stable kind (``queue_full``, ``corrupt_image``...),
    ``detail`` a human sentence, ``retry_after`` seconds for 503s.
    """

    def __init__(self, status: int, error: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, str]:
        return {"error": self.error, "detail": self.detail}


def shown(name: str) -> str:
    """``name`` as an error quotes it: ``repr``, cut to ``SHOWN_CHARS`` (a 10 KB name is not echoed whole:
    gRPC carries the detail in a header, which has a size limit)."""
    if len(name) <= SHOWN_CHARS:
        return repr(name)
    return f"{name[:SHOWN_CHARS]!r}... ({len(name)} characters)"


def body_too_large(limit: int) -> ServeError:
    return ServeError(413, "body_too_large", f"request body exceeds the limit of {limit} bytes")


def request_timeout(detail: str) -> ServeError:
    return ServeError(408, "request_timeout", detail)


def client_disconnected(detail: str = "the client closed the connection") -> ServeError:
    return ServeError(499, "client_disconnected", detail)


def unsupported_media_type(content_type: str) -> ServeError:
    return ServeError(
        415,
        "unsupported_media_type",
        f"unsupported content type {content_type!r}; send image/jpeg, image/png, image/webp, image/bmp, "
        "image/tiff, application/octet-stream, or multipart/form-data with a field 'image'",
    )


def invalid_argument(detail: str) -> ServeError:
    return ServeError(400, "invalid_argument", detail)


def corrupt_image(detail: str) -> ServeError:
    return ServeError(400, "corrupt_image", detail)


def image_too_large(detail: str) -> ServeError:
    return ServeError(400, "image_too_large", detail)


def queue_full(retry_after: float) -> ServeError:
    return ServeError(503, "queue_full", "the request queue is full, retry later", retry_after=retry_after)


def not_ready() -> ServeError:
    return ServeError(503, "not_ready", "the model is still loading or warming up", retry_after=1.0)


def shutting_down() -> ServeError:
    return ServeError(503, "shutting_down", "the server is shutting down", retry_after=1.0)


def deadline_exceeded(detail: str = "the request deadline expired") -> ServeError:
    return ServeError(504, "deadline_exceeded", detail)


def internal(detail: str) -> ServeError:
    return ServeError(500, "internal", detail)


def model_not_found(name: str) -> ServeError:
    return ServeError(
        404, "model_not_found", f"no model named {shown(name)} is served (GET /v1/models lists them)"
    )


def model_not_ready(name: str, state: str, error: str | None = None) -> ServeError:
    detail = f"model {shown(name)} is {state}"
    if error:
        detail += f": {error}"
    return ServeError(503, "not_ready", detail, retry_after=1.0)


def conflict(detail: str) -> ServeError:
    return ServeError(409, "conflict", detail)


def load_failed(name: str, reason: str) -> ServeError:
    return ServeError(400, "load_failed", f"loading model {shown(name)} failed: {reason}")


def unauthorized(detail: str) -> ServeError:
    return ServeError(401, "unauthorized", detail)


def forbidden(detail: str) -> ServeError:
    return ServeError(403, "forbidden", detail)
