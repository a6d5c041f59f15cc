"""gRPC ``inference.GRPCInferenceService`` against the live server with tritonclient.grpc."""

from __future__ import annotations

import json
import queue
import struct

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from server.grpc.gen import grpc_service_pb2 as pb
from server.grpc.gen import grpc_service_pb2_grpc as pb_grpc
from tests.grpc.serving import LiveServer, decode_mask, encode, scene
from tests.server.live import metric_value
from tests.v2.conftest import MODEL


@pytest.fixture
def client(live: LiveServer) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(live.grpc_address)


def _input(images: list[bytes]) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=object))
    return tensor


def _outputs(*names: str) -> list[grpcclient.InferRequestedOutput]:
    return [grpcclient.InferRequestedOutput(n) for n in names]


def test_health_metadata_and_config(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    assert client.get_server_metadata().name == "segformer-serve"
    meta = client.get_model_metadata(MODEL, as_json=True)
    assert meta["versions"] == ["1"] and [t["name"] for t in meta["inputs"]] == ["image", "pixels"]
    config = client.get_model_config(MODEL, as_json=True)["config"]
    assert config["name"] == MODEL and [o["name"] for o in config["output"]] == [
        "mask",
        "mask_png",
        "classes",
    ]


def test_infer_bytes_and_pixels_match_v1(client: grpcclient.InferenceServerClient, live: LiveServer) -> None:
    images = [encode(scene(50, 70, seed=20 + i), "JPEG") for i in range(3)]
    result = client.infer(MODEL, [_input(images)], outputs=_outputs("mask", "mask_png", "classes"))
    mask = result.as_numpy("mask")
    assert mask.shape == (3, 50, 70)
    for i, image in enumerate(images):
        v1 = httpx.post(f"{live.rest_url}/v1/segment", content=image, headers={"Content-Type": "image/jpeg"})
        assert np.array_equal(decode_mask(v1.content), mask[i])
    assert np.array_equal(decode_mask(result.as_numpy("mask_png")[2]), mask[2])
    assert json.loads(result.as_numpy("classes")[0])[0].keys() == {"id", "label", "pixels", "fraction"}
    pixels = np.stack([scene(32, 40, seed=9)])
    tensor = grpcclient.InferInput("pixels", list(pixels.shape), "UINT8")
    tensor.set_data_from_numpy(pixels)
    by_pixels = client.infer(MODEL, [tensor], outputs=_outputs("mask")).as_numpy("mask")
    v1 = httpx.post(
        f"{live.rest_url}/v1/segment", content=encode(pixels[0]), headers={"Content-Type": "image/png"}
    )
    assert np.array_equal(by_pixels[0], decode_mask(v1.content))


def test_stream_of_50_frames_is_answered_completely_in_order(
    client: grpcclient.InferenceServerClient,
) -> None:
    answers: queue.Queue[tuple[object, object]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for i in range(50):
            frame = [b"broken frame"] if i == 17 else [encode(scene(24, 32, seed=100 + i), "JPEG")]
            client.async_stream_infer(MODEL, [_input(frame)], request_id=f"f{i}", outputs=_outputs("mask"))
        got = [answers.get(timeout=300) for _ in range(50)]
    finally:
        client.stop_stream()
    ids = []
    for index, (result, error) in enumerate(got):
        if index == 17:
            assert isinstance(error, InferenceServerException) and "not a decodable image" in error.message()
            continue
        assert error is None
        ids.append(result.get_response().id)
        assert result.as_numpy("mask").shape == (1, 24, 32)
    assert ids == [f"f{i}" for i in range(50) if i != 17]


@pytest.mark.parametrize(
    ("model", "version", "tensor", "outputs", "code", "message"),
    [
        (MODEL, "", ("image", [1], "UINT8"), ["mask"], grpc.StatusCode.INVALID_ARGUMENT, "datatype BYTES"),
        (MODEL, "", ("photo", [1], "BYTES"), ["mask"], grpc.StatusCode.INVALID_ARGUMENT, "unknown input"),
        (MODEL, "", ("image", [1], "BYTES"), ["logits"], grpc.StatusCode.INVALID_ARGUMENT, "unknown output"),
        ("nope", "", ("image", [1], "BYTES"), ["mask"], grpc.StatusCode.NOT_FOUND, "no model named"),
        (MODEL, "3", ("image", [1], "BYTES"), ["mask"], grpc.StatusCode.NOT_FOUND, "no version '3'"),
    ],
)
def test_bad_requests_get_the_right_status(
    live: LiveServer,
    model: str,
    version: str,
    tensor: tuple[str, list[int], str],
    outputs: list[str],
    code: grpc.StatusCode,
    message: str,
) -> None:
    client = grpcclient.InferenceServerClient(live.grpc_address)
    name, shape, datatype = tensor
    bad = grpcclient.InferInput(name, shape, datatype)
    if datatype == "BYTES":
        bad.set_data_from_numpy(np.array([encode(scene(16, 16, 0))], dtype=object))
    else:
        bad.set_data_from_numpy(np.zeros(shape, np.uint8))
    with pytest.raises(InferenceServerException) as info:
        client.infer(model, [bad], model_version=version, outputs=_outputs(*outputs))
    assert info.value.status() == str(code) and message in info.value.message()


def test_shape_and_raw_contents_mismatches_over_the_wire(live: LiveServer) -> None:
    image = encode(scene(16, 16, 0))
    two = pb.ModelInferRequest(model_name=MODEL)
    two.inputs.add(name="image", datatype="BYTES", shape=[2])
    two.raw_input_contents.append(struct.pack("<I", len(image)) + image)
    extra = pb.ModelInferRequest()
    extra.CopyFrom(two)
    extra.raw_input_contents.append(b"")
    typed = pb.ModelInferRequest(model_name=MODEL)
    typed.inputs.add(name="image", datatype="BYTES", shape=[1]).contents.bytes_contents.append(image)
    typed.outputs.add(name="mask")
    with grpc.insecure_channel(live.grpc_address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for request, message in [(two, "1 element"), (extra, "2 entries for 1 inputs")]:
            with pytest.raises(grpc.RpcError) as info:
                stub.ModelInfer(request, timeout=60)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in info.value.details()
        answer = stub.ModelInfer(typed, timeout=60)
    assert list(answer.outputs[0].shape) == [1, 16, 16] and len(answer.raw_output_contents[0]) == 256


def test_undecodable_bytes_missing_input_and_the_server_keeps_serving(
    client: grpcclient.InferenceServerClient, live: LiveServer
) -> None:
    with pytest.raises(InferenceServerException, match="not a decodable image") as info:
        client.infer(MODEL, [_input([b"\x89PNG garbage"])], outputs=_outputs("mask"))
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException, match="exactly one input"):
        client.infer(MODEL, [], outputs=_outputs("mask"))
    with pytest.raises(InferenceServerException, match="no model named") as missing:
        client.is_model_ready("nope")
    assert missing.value.status() == "StatusCode.NOT_FOUND"
    ok = client.infer(MODEL, [_input([encode(scene(20, 20, 1))])], outputs=_outputs("mask"))
    assert ok.as_numpy("mask").shape == (1, 20, 20)
    text = live.metrics()
    endpoint = "/inference.GRPCInferenceService/ModelInfer"
    assert (
        metric_value(text, "segformer_requests_total", transport="grpc", endpoint=endpoint, status="400") >= 1
    )
    assert (
        metric_value(text, "segformer_requests_total", transport="grpc", endpoint=endpoint, status="200") >= 1
    )
