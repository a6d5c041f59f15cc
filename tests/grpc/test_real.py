"""The real SegFormer-B0 ADE20K weights on real photos over gRPC: a stream agrees with REST and the graph."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from server.grpc.gen import segmentation_pb2 as pb
from server.grpc.gen import segmentation_pb2_grpc as pb_grpc
from tests.grpc.serving import GraphReference, LiveServer, decode_mask

pytestmark = pytest.mark.real_weights


@pytest.fixture(scope="module")
def real_live(real_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(
        real_b0_onnx, tmp_path_factory.mktemp("real-grpc"), "--warmup-runs", "1", "--log-level", "warning"
    )
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def test_real_photos_stream_matches_rest_and_graph(
    real_live: LiveServer, real_b0_onnx: Path, real_photos: list[Path]
) -> None:
    reference = GraphReference(real_b0_onnx)
    frames = [photo.read_bytes() for photo in real_photos]
    with grpc.insecure_channel(real_live.grpc_address) as channel:
        stub = pb_grpc.SegmentationServiceStub(channel)
        model = stub.GetModel(pb.GetModelRequest(), timeout=10)
        requests = (pb.SegmentRequest(image=f, frame_id=i) for i, f in enumerate(frames))
        responses = list(stub.StreamSegment(requests, timeout=300))
    assert model.num_labels == 150 and model.classes[0].label == "wall"
    assert [r.frame_id for r in responses] == list(range(len(frames)))
    labels: set[str] = set()
    for frame, response in zip(frames, responses, strict=True):
        mask = decode_mask(response.mask.data)
        rest = httpx.post(
            f"{real_live.rest_url}/v1/segment",
            content=frame,
            headers={"Content-Type": "image/jpeg"},
            timeout=120,
        )
        assert float((mask == decode_mask(rest.content)).mean()) >= 0.999
        assert float((mask == reference.mask(frame)).mean()) >= 0.999
        labels |= {c.label for c in response.classes if c.fraction > 0.05}
    assert labels & {
        "wall",
        "sky",
        "floor",
        "tree",
        "building",
        "road",
        "person",
    }  # real scenes, real classes
