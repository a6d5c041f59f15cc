"""What a failed model load tells callers: one line in words, without the server's file paths.

A load fails deep down (``onnx``, ONNX Runtime, OpenVINO, the export subprocess) with text written for
the server's operator: absolute paths of the cache and the repository, and OpenVINO's ``Exception from
src/...cpp:105:`` location lines before the message. The model's status (``GET /v1/models``, readable
without a token) and its 503s carry ``reason(exc)`` instead; the log keeps the whole exception.
"""

from __future__ import annotations

import re

#: an absolute path (the part up to its last ``/`` is dropped: ``/srv/models/z.onnx`` -> ``z.onnx``)
_PATH = re.compile(r"(?<![\w.~:/-])/(?:[^\s'\"/:,;()\[\]]+/)*(?=[^\s/])")
#: OpenVINO's source locations (``Exception from src/inference/src/cpp/core.cpp:105:``)
_LOCATION = re.compile(r"^(Exception from )?\S+\.(cpp|hpp|h|cc):\d+:?$")
MAX_CHARS = 300


def redact_paths(text: str) -> str:
    """``text`` with every absolute path cut to its last part."""
    return _PATH.sub("", text)


def reason(exc: BaseException) -> str:
    """One line saying why a load failed: the first line of the exception that is not a source
    location, paths cut to their last part, at most ``MAX_CHARS`` characters; else the exception's kind."""
    lines = (line.strip() for line in str(exc).splitlines())
    text = next((line for line in lines if line and not _LOCATION.match(line)), "")
    text = redact_paths(text)
    if len(text) > MAX_CHARS:
        text = text[: MAX_CHARS - 3] + "..."
    return text or type(exc).__name__
