"""``server.logs``: JSON lines with the request's context, the access line (live-server checks of the
trace ids on these lines are in tests/server/test_tracing.py)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from server import logs


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger("segformer")
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_lines_inside_a_request_carry_its_id_and_model(captured: io.StringIO) -> None:
    log = logging.getLogger("segformer.test")
    log.info("outside")
    with logs.request_context({"x-request-id": "abc-1"}):
        logs.MODEL.set("ade")
        log.warning("inside %d", 7)
        logs.access("POST /v1/segment", 200, 0.0123, 456, "ade")
    with logs.request_context({}) as fresh:
        log.info("no id sent")
    outside, inside, access, generated = _lines(captured)
    assert outside["message"] == "outside" and "request_id" not in outside and "trace_id" not in outside
    assert inside["message"] == "inside 7" and inside["request_id"] == "abc-1" and inside["model"] == "ade"
    assert inside["level"] == "WARNING" and inside["logger"] == "segformer.test"
    assert access["logger"] == "segformer.access" and access["request_id"] == "abc-1"
    assert (access["method"], access["status"], access["bytes"]) == ("POST /v1/segment", 200, 456)
    assert access["latency_ms"] == 12.3
    assert generated["request_id"] == fresh and len(fresh) == 32


def test_an_exception_is_one_json_line(captured: io.StringIO) -> None:
    try:
        raise KeyError("lane 7")
    except KeyError:
        logging.getLogger("segformer.test").exception("failed")
    (line,) = _lines(captured)
    assert line["message"] == "failed" and "KeyError: 'lane 7'" in str(line["exception"])
