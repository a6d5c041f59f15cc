"""Hardening (issue #12) over gRPC, against a real server: unknown enums, the body limit, stream
back-pressure instead of ``queue_full`` frames, retry hints, and the SIGTERM drain (last: it stops it)."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from server import errors
from server.grpc import convert
from server.grpc.gen import segmentation_pb2 as pb
from server.grpc.gen import segmentation_pb2_grpc as pb_grpc
from tests.grpc.serving import LiveServer, encode, scene, scene_png
from tests.server.test_errors import png_header_only

MAX_BODY = 1024 * 1024
QUEUE = 4
DRAIN_S = 4.0
FRAME = scene_png(48, 64, seed=5)


@pytest.fixture(scope="module")
def guarded(random_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(
        random_b0_onnx,
        tmp_path_factory.mktemp("grpc-guarded"),
        "--max-body-bytes", str(MAX_BODY),
        "--max-queue-size", str(QUEUE),
        "--max-batch-size", "1",
        "--drain-delay-s", str(DRAIN_S),
        "--log-level", "warning",
    )  # fmt: skip
    try:
        yield server.wait_ready()
    finally:
        assert server.stop() == 0, server.log_tail()


@pytest.fixture
def stub(guarded: LiveServer) -> Iterator[pb_grpc.SegmentationServiceStub]:
    options = [("grpc.max_send_message_length", 8 * MAX_BODY)]
    with grpc.insecure_channel(guarded.grpc_address, options=options) as channel:
        yield pb_grpc.SegmentationServiceStub(channel)


def _code_and_kind(call: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    trailers = dict(call.trailing_metadata() or ())  # type: ignore[attr-defined]
    return call.code(), trailers.get("segformer-error", "")  # type: ignore[attr-defined]


@pytest.mark.parametrize("field", [{"mask_format": 99}, {"mode": 99}])
def test_unknown_enums_are_invalid_argument(
    stub: pb_grpc.SegmentationServiceStub, field: dict[str, int]
) -> None:
    with pytest.raises(grpc.RpcError) as failed:
        stub.Segment(pb.SegmentRequest(image=FRAME, **field), timeout=30)
    assert _code_and_kind(failed.value) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")
    (frame,) = stub.StreamSegment(iter([pb.SegmentRequest(image=FRAME, frame_id=7, **field)]), timeout=30)
    assert frame.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert frame.status.error == "invalid_argument"


def test_image_over_the_rest_body_limit_is_refused(stub: pb_grpc.SegmentationServiceStub) -> None:
    big = b"\x89PNG" + b"\0" * (MAX_BODY + 1)  # a message gRPC takes, an image the server does not
    with pytest.raises(grpc.RpcError) as failed:
        stub.Segment(pb.SegmentRequest(image=big), timeout=30)
    assert _code_and_kind(failed.value) == (grpc.StatusCode.INVALID_ARGUMENT, "body_too_large")
    assert str(MAX_BODY) in failed.value.details()  # type: ignore[attr-defined]
    (frame,) = stub.StreamSegment(iter([pb.SegmentRequest(image=big, frame_id=1)]), timeout=30)
    assert frame.status.error == "body_too_large"


def test_error_details_are_words_not_exception_names(stub: pb_grpc.SegmentationServiceStub) -> None:
    jpeg = encode(scene(200, 200, seed=1), "JPEG")
    with pytest.raises(grpc.RpcError) as failed:
        stub.Segment(pb.SegmentRequest(image=jpeg[: len(jpeg) // 2]), timeout=30)
    assert _code_and_kind(failed.value) == (grpc.StatusCode.INVALID_ARGUMENT, "corrupt_image")
    details = failed.value.details()  # type: ignore[attr-defined]
    assert "truncated" in details and not re.search(r"\b[A-Z]\w*(Error|Exception)\b", details)


def test_bomb_error_quotes_the_configured_limits(stub: pb_grpc.SegmentationServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as failed:
        stub.Segment(pb.SegmentRequest(image=png_header_only(15000, 15000)), timeout=30)
    assert _code_and_kind(failed.value) == (grpc.StatusCode.INVALID_ARGUMENT, "image_too_large")
    details = failed.value.details()  # type: ignore[attr-defined]
    assert "40000000 pixels in total" in details and "178956970" not in details


def test_model_description_shows_no_filesystem_path(
    stub: pb_grpc.SegmentationServiceStub, random_b0_onnx: Path
) -> None:
    text = str(stub.GetModel(pb.GetModelRequest(), timeout=30)) + str(stub.ListModels(pb.ListModelsRequest()))
    assert str(random_b0_onnx.parent) not in text and random_b0_onnx.name not in text
    assert "source_sha256" in text


def test_huge_frame_budget_is_clamped_and_served(stub: pb_grpc.SegmentationServiceStub) -> None:
    assert stub.Segment(pb.SegmentRequest(image=FRAME, timeout_ms=2**32 - 1), timeout=30).mask.width == 64


def _stream(
    stub: pb_grpc.SegmentationServiceStub, frames: int, out: list[pb.SegmentResponse], **kw: int
) -> None:
    requests = (pb.SegmentRequest(image=FRAME, frame_id=i, **kw) for i in range(frames))
    out.extend(stub.StreamSegment(requests, timeout=120))


def _concurrent_streams(
    stub: pb_grpc.SegmentationServiceStub, streams: int, frames: int
) -> list[list[pb.SegmentResponse]]:
    results: list[list[pb.SegmentResponse]] = [[] for _ in range(streams)]
    threads = [threading.Thread(target=_stream, args=(stub, frames, results[i])) for i in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    return results


def test_streams_wait_for_room_instead_of_failing_frames(stub: pb_grpc.SegmentationServiceStub) -> None:
    # 6 streams x 8 frames in flight = 48 frames against a queue of 4: before, most came back queue_full
    results = _concurrent_streams(stub, streams=6, frames=10)
    for responses in results:
        assert [r.frame_id for r in responses] == list(range(10))
        assert [r.status.error for r in responses if r.HasField("status")] == []


def test_a_frame_that_cannot_wait_says_when_to_retry(stub: pb_grpc.SegmentationServiceStub) -> None:
    background: list[list[pb.SegmentResponse]] = []
    flood = threading.Thread(
        target=lambda: background.extend(_concurrent_streams(stub, streams=6, frames=12))
    )
    flood.start()
    time.sleep(1.0)  # the queue is full now, and stays full while the streams have frames
    hurried: list[pb.SegmentResponse] = []
    _stream(stub, 6, hurried, timeout_ms=30)
    flood.join(timeout=180)
    failed = [r.status for r in hurried if r.HasField("status")]
    full = [s for s in failed if s.error == "queue_full"]
    assert full, [s.error for s in failed]
    for status in full:
        assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0] and status.retry_after_s >= 1
    assert {s.error for s in failed} <= {"queue_full", "deadline_exceeded"}
    assert all(not r.HasField("status") for responses in background for r in responses)


def test_frame_errors_carry_the_retry_hint() -> None:
    assert convert.frame_error(3, errors.queue_full(retry_after=2.2)).status.retry_after_s == 3
    assert convert.frame_error(3, errors.shutting_down()).status.retry_after_s == 1
    assert convert.frame_error(3, errors.corrupt_image("x")).status.retry_after_s == 0


def test_sigterm_drains_with_readiness_503_while_serving(
    guarded: LiveServer, stub: pb_grpc.SegmentationServiceStub
) -> None:
    assert httpx.get(f"{guarded.rest_url}/readyz", timeout=10).status_code == 200
    guarded.proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    while guarded.health_history[-1:] != ["NOT_SERVING"] and time.monotonic() - start < DRAIN_S / 2:
        time.sleep(0.02)
    assert guarded.health_history[-1] == "NOT_SERVING"
    ready = httpx.get(f"{guarded.rest_url}/readyz", timeout=10)
    assert ready.status_code == 503 and ready.json()["error"] == "shutting_down"
    assert ready.headers["Retry-After"] == "1"
    # still serving during the delay: new requests on both transports are answered, not refused
    served = httpx.post(
        f"{guarded.rest_url}/v1/segment", content=FRAME, headers={"Content-Type": "image/png"}, timeout=30
    )
    assert served.status_code == 200
    assert stub.Segment(pb.SegmentRequest(image=FRAME), timeout=30).mask.width == 64
    frames = list(stub.StreamSegment(iter([pb.SegmentRequest(image=FRAME, frame_id=i) for i in range(3)])))
    assert [f.frame_id for f in frames] == [0, 1, 2] and not any(f.HasField("status") for f in frames)
    assert time.monotonic() - start < DRAIN_S  # all of that inside the delay
    assert guarded.proc.wait(timeout=60) == 0
    assert time.monotonic() - start >= DRAIN_S * 0.9
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{guarded.rest_url}/readyz", timeout=5)
