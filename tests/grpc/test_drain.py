"""SIGTERM with a gRPC stream open: the server stops taking frames, answers every frame it took, ends the
call with UNAVAILABLE (``shutting_down``) at once (not after its grace period) and exits 0."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from server.grpc.gen import segmentation_pb2 as pb
from server.grpc.gen import segmentation_pb2_grpc as pb_grpc
from tests.grpc.serving import LiveServer, scene_png


def _endless(stop: threading.Event, sent: list[int]) -> Iterator[pb.SegmentRequest]:
    frame_id = 0
    while not stop.is_set():
        sent.append(frame_id)
        yield pb.SegmentRequest(image=scene_png(40 + frame_id % 5, 56, frame_id), frame_id=frame_id)
        frame_id += 1
        time.sleep(0.01)


def test_sigterm_ends_an_open_stream_after_answering_it(random_b0_onnx: Path, tmp_path: Path) -> None:
    server = LiveServer(
        random_b0_onnx, tmp_path, "--sessions", "1", "--intra-op-threads", "1", "--graceful-timeout-s", "60",
        "--log-level", "warning",
    )  # fmt: skip
    stop, sent, answered = threading.Event(), [], []
    try:
        server.wait_ready()
        with grpc.insecure_channel(server.grpc_address) as channel:
            call = pb_grpc.SegmentationServiceStub(channel).StreamSegment(_endless(stop, sent), timeout=120)
            start = None
            try:
                for response in call:
                    assert not response.HasField("status"), response.status
                    assert response.mask.height == 40 + response.frame_id % 5
                    answered.append(response.frame_id)
                    if len(answered) == 10:
                        start = time.monotonic()
                        server.proc.send_signal(signal.SIGTERM)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                assert ("segformer-error", "shutting_down") in exc.trailing_metadata()
                assert "resend" in exc.details()
            else:
                raise AssertionError("the stream ended without a status")
            finally:
                stop.set()
            assert start is not None and time.monotonic() - start < 10, "ended at once, not after the grace"
        assert answered == list(range(len(answered))) and len(answered) >= 10
        assert len(sent) > len(answered)  # the client kept sending: those frames were never taken
        assert server.proc.wait(timeout=30) == 0
    finally:
        stop.set()
        server.stop()
