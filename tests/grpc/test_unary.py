"""Unary ``Segment`` and ``GetModel`` over a real channel to the real server."""

from __future__ import annotations

import time

import grpc
import httpx
import numpy as np
import pytest

from server.grpc.gen import segmentation_pb2 as pb
from server.grpc.gen import segmentation_pb2_grpc as pb_grpc
from tests.grpc.serving import GraphReference, LiveServer, decode_mask, encode, noisy_png, scene, scene_png
from tests.server.live import metric_value

STAGES = {"decode", "preprocess", "queue", "inference", "postprocess", "total", "encode"}


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype
    return float((a == b).mean())


@pytest.mark.parametrize(
    ("height", "width", "fmt"), [(48, 64, "PNG"), (240, 320, "JPEG"), (333, 517, "PNG"), (480, 640, "JPEG")]
)
def test_unary_mask_matches_rest_and_graph(
    stub: pb_grpc.SegmentationServiceStub,
    live: LiveServer,
    reference: GraphReference,
    height: int,
    width: int,
    fmt: str,
) -> None:
    data = encode(scene(height, width, seed=height), fmt)
    response = stub.Segment(pb.SegmentRequest(image=data, frame_id=7), timeout=60)
    assert response.frame_id == 7 and not response.HasField("status")
    mask = response.mask
    assert (mask.format, mask.dtype, mask.width, mask.height) == (
        pb.MASK_FORMAT_PNG,
        pb.MASK_DTYPE_UINT8,
        width,
        height,
    )
    got = decode_mask(mask.data)
    rest = httpx.post(
        f"{live.rest_url}/v1/segment", content=data, headers={"Content-Type": f"image/{fmt.lower()}"}
    )
    assert rest.status_code == 200
    assert _agreement(got, decode_mask(rest.content)) >= 0.999
    assert _agreement(got, reference.mask(data)) >= 0.999
    ids, counts = np.unique(got, return_counts=True)
    assert [(c.id, c.pixels) for c in response.classes] == list(
        zip(ids.tolist(), counts.tolist(), strict=True)
    )
    assert sum(c.fraction for c in response.classes) == pytest.approx(1.0)
    assert all(c.label for c in response.classes)
    assert set(response.timings) >= STAGES and response.timings["total"] > 0


def test_raw_mask_and_native_mode(stub: pb_grpc.SegmentationServiceStub, reference: GraphReference) -> None:
    data = scene_png(96, 160, seed=3)
    request = pb.SegmentRequest(image=data, mode=pb.INFERENCE_MODE_NATIVE, mask_format=pb.MASK_FORMAT_RAW)
    response = stub.Segment(request, timeout=60)
    mask = response.mask
    assert (mask.format, mask.width, mask.height, len(mask.data)) == (pb.MASK_FORMAT_RAW, 160, 96, 96 * 160)
    raw = np.frombuffer(mask.data, dtype=np.uint8).reshape(96, 160)
    assert _agreement(raw, reference.mask(data, mode="native")) >= 0.999


def test_get_model_is_the_rest_model_body(stub: pb_grpc.SegmentationServiceStub, live: LiveServer) -> None:
    from google.protobuf import json_format

    response = stub.GetModel(pb.GetModelRequest(), timeout=10)
    body = httpx.get(f"{live.rest_url}/v1/model").json()
    assert json_format.MessageToDict(response.details) == body
    assert (response.name, response.variant, response.num_labels) == (
        body["name"],
        body["variant"],
        body["num_labels"],
    )
    assert [c.label for c in response.classes] == [c["label"] for c in body["classes"]]
    assert list(response.classes[1].color) == body["classes"][1]["color"]
    assert [response.inference_height, response.inference_width] == body["inference_size"]
    assert (response.mode, response.mask_dtype, list(response.providers)) == (
        body["mode"],
        body["mask_dtype"],
        body["providers"],
    )


@pytest.mark.parametrize(
    ("image", "kind"),
    [
        (b"", "corrupt_image"),
        (b"definitely not an image", "corrupt_image"),
        (scene_png(64, 64, 1)[:200], "corrupt_image"),
    ],
)
def test_bad_image_is_invalid_argument(
    stub: pb_grpc.SegmentationServiceStub, image: bytes, kind: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Segment(pb.SegmentRequest(image=image), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ("segformer-error", kind) in caught.value.trailing_metadata()
    assert stub.Segment(pb.SegmentRequest(image=scene_png(32, 32, 2)), timeout=60).mask.width == 32


def test_six_megabyte_image_passes(stub: pb_grpc.SegmentationServiceStub) -> None:
    data = noisy_png(6 * 1024 * 1024)
    assert len(data) > 6 * 1024 * 1024 > 4 * 1024 * 1024  # over gRPC's default 4 MiB limit
    response = stub.Segment(pb.SegmentRequest(image=data, mask_format=pb.MASK_FORMAT_RAW), timeout=120)
    side = response.mask.width
    assert response.mask.height == side and len(response.mask.data) == side * side
    assert sum(c.pixels for c in response.classes) == side * side


def test_deadline_shorter_than_inference(stub: pb_grpc.SegmentationServiceStub, live: LiveServer) -> None:
    data = encode(scene(480, 640, seed=9), "JPEG")
    start = time.monotonic()
    stub.Segment(pb.SegmentRequest(image=data), timeout=60)
    inference = time.monotonic() - start
    endpoint = {"transport": "grpc", "endpoint": "/segformer.v1.SegmentationService/Segment", "status": "504"}
    expired = metric_value(live.metrics(), "segformer_requests_total", **endpoint)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Segment(pb.SegmentRequest(image=data), timeout=min(0.02, inference / 4))
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert stub.Segment(pb.SegmentRequest(image=data), timeout=60).mask.width == 640  # still serving
    # the server saw the deadline too (it stopped the request and counted it as 504)
    assert metric_value(live.metrics(), "segformer_requests_total", **endpoint) == expired + 1


def test_unknown_mode_is_invalid_argument(stub: pb_grpc.SegmentationServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Segment(pb.SegmentRequest(image=scene_png(32, 32, 4), mode=7), timeout=30)  # type: ignore[arg-type]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
