"""SIGTERM with a gRPC stream open: the server stops taking frames, answers every frame it took, ends the
call with UNAVAILABLE (``shutting_down``) at once (not after its grace period) and exits 0."""

from __future__ import annotations

from pathlib import Path

from server.grpc.gen import segmentation_pb2 as pb
from server.grpc.gen import segmentation_pb2_grpc as pb_grpc
from tests.grpc.serving import scene_png, sigterm_mid_stream


def _answered(response: pb.SegmentResponse) -> int:
    assert not response.HasField("status"), response.status
    assert response.mask.height == 40 + response.frame_id % 5
    return response.frame_id


def test_sigterm_ends_an_open_stream_after_answering_it(random_b0_onnx: Path, tmp_path: Path) -> None:
    sigterm_mid_stream(
        random_b0_onnx,
        tmp_path,
        lambda channel, frames: pb_grpc.SegmentationServiceStub(channel).StreamSegment(frames, timeout=120),
        lambda i: pb.SegmentRequest(image=scene_png(40 + i % 5, 56, i), frame_id=i),
        _answered,
    )
