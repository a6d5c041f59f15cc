"""Hardening II (issue #30) of the Open Inference Protocol, against a real server (REST + gRPC): bodies
that once answered 500 (and dropped the pooled connection), element counts the queue can never take,
a NaN timeout, long names echoed whole. Every answer is a 400 / INVALID_ARGUMENT in words."""

from __future__ import annotations

import base64
import http.client
import json
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from server.grpc.gen import grpc_service_pb2 as pb
from server.grpc.gen import grpc_service_pb2_grpc as pb_grpc
from tests.grpc.serving import LiveServer, scene_png

QUEUE = 4
MODEL = "segformer-b0-random"
INFER = f"/v2/models/{MODEL}/infer"
PYTHON_EXCEPTION = re.compile(r"\b[A-Z]\w*(Error|Exception)\b|Traceback")
IMAGE = base64.b64encode(scene_png(32, 48, seed=1)).decode()


@pytest.fixture(scope="module")
def guarded(random_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(
        random_b0_onnx,
        tmp_path_factory.mktemp("v2-guarded"),
        "--max-queue-size", str(QUEUE),
        "--max-batch-size", "1",
        "--log-level", "warning",
    )  # fmt: skip
    try:
        yield server.wait_ready()
    finally:
        assert server.stop() == 0, server.log_tail()


@pytest.fixture
def stub(guarded: LiveServer) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(guarded.grpc_address) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def _pixels(shape: list[int], data: object) -> bytes:
    body = {"inputs": [{"name": "pixels", "datatype": "UINT8", "shape": shape, "data": data}]}
    return json.dumps(body).encode()


def _nested(depth: int) -> object:
    data: object = [1, 2, 3]
    for _ in range(depth):
        data = [data]
    return data


BAD_BODIES = {
    "output parameters a list": json.dumps(
        {
            "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [IMAGE]}],
            "outputs": [{"name": "mask", "parameters": [1]}],
        }
    ).encode(),
    "input parameters a list": json.dumps(
        {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [IMAGE], "parameters": [1]}]}
    ).encode(),
    "shape product wraps int64": _pixels([4611686018427387904, 4, 1, 3], []),
    "dimension 2**70": _pixels([2**70, 1, 1, 3], []),
    "pixel value 2**70": _pixels([1, 1, 1, 3], [2**70, 0, 0]),
    "pixel value -1": _pixels([1, 1, 1, 3], [-1, 0, 0]),
    "100,000 [": b'{"inputs":' + b"[" * 100_000,
    "data nested 900 deep": _pixels([1, 1, 1, 3], _nested(900)),
    "id a nested list": json.dumps(
        {
            "id": _nested(300),
            "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [IMAGE]}],
        }
    ).encode(),
    "shape of 10,000 dimensions": _pixels([1] * 10_000, [0, 0, 0]),
}


def _post(conn: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    answer = conn.getresponse()
    return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_bodies_are_400_in_words_and_keep_the_connection(guarded: LiveServer, case: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", guarded.rest_port, timeout=30)
    try:
        status, headers, body = _post(conn, INFER, BAD_BODIES[case])
        assert status == 400, body[:300]
        detail = json.loads(body)["error"]
        assert detail and not PYTHON_EXCEPTION.search(detail) and len(detail) < 1000, detail
        assert headers.get("connection") != "close"
        local = conn.sock.getsockname() if conn.sock is not None else None
        good = _pixels([1, 8, 8, 3], [[[[7, 8, 9]] * 8] * 8])
        status, _, answer = _post(conn, INFER, good)  # the same pooled connection serves the next request
        assert status == 200, answer[:300]
        assert conn.sock is not None and conn.sock.getsockname() == local
    finally:
        conn.close()


def _infer_request(
    shape: list[int], raw: bytes = b"", **parameters: pb.InferParameter
) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="pixels", datatype="UINT8", shape=shape)
    request.raw_input_contents.append(raw)
    for key, value in parameters.items():
        request.parameters[key].CopyFrom(value)
    return request


@pytest.mark.parametrize("shape", [[4611686018427387904, 4, 1, 3], [2**62, 2, 2, 3], [1] * 100])
def test_grpc_overflowing_shapes_are_invalid_argument(
    stub: pb_grpc.GRPCInferenceServiceStub, shape: list[int]
) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        stub.ModelInfer(_infer_request(shape), timeout=30)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    detail = failure.value.details()  # type: ignore[attr-defined]
    assert "input 'pixels'" in detail and not PYTHON_EXCEPTION.search(detail), detail


def test_nan_timeout_is_400_on_every_transport(
    guarded: LiveServer, stub: pb_grpc.GRPCInferenceServiceStub
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", guarded.rest_port, timeout=30)
    image = b'{"name":"image","datatype":"BYTES","shape":[1],"data":["%s"]}' % IMAGE.encode()
    body = b'{"parameters":{"timeout":NaN},"inputs":[%s]}' % image
    try:
        status, _, answer = _post(conn, INFER, body)
        assert status == 400 and "timeout" in json.loads(answer)["error"], answer
        for value in ("NaN", "Infinity"):
            status, _, answer = _post(conn, f"/v1/segment?timeout_ms={value}", scene_png(16, 16, seed=0))
            assert status == 400 and json.loads(answer)["error"] == "invalid_argument", answer
    finally:
        conn.close()
    request = _infer_request([1, 8, 8, 3], bytes(192), timeout=pb.InferParameter(double_param=float("nan")))
    with pytest.raises(grpc.RpcError) as failure:
        stub.ModelInfer(request, timeout=30)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "timeout" in failure.value.details()  # type: ignore[attr-defined]


def _images(count: int, image: bytes) -> bytes:
    data = [base64.b64encode(image).decode()] * count
    return json.dumps(
        {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [count], "data": data}]}
    ).encode()


@pytest.mark.parametrize(
    ("count", "image", "words"), [(QUEUE + 1, scene_png(16, 16, 0), "max-queue-size"), (100, b"", "empty")]
)
def test_element_counts_the_queue_never_takes_are_400(
    guarded: LiveServer, stub: pb_grpc.GRPCInferenceServiceStub, count: int, image: bytes, words: str
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", guarded.rest_port, timeout=30)
    try:
        status, headers, answer = _post(conn, INFER, _images(count, image))
    finally:
        conn.close()
    assert status == 400 and "retry-after" not in headers, answer
    assert words in json.loads(answer)["error"]
    request = pb.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="image", datatype="BYTES", shape=[count]).contents.bytes_contents.extend(
        [image] * count
    )
    with pytest.raises(grpc.RpcError) as failure:
        stub.ModelInfer(request, timeout=30)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert words in failure.value.details()  # type: ignore[attr-defined]


def test_grpc_not_found_does_not_echo_a_long_name(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    name = "x" * 10_000
    for call in (
        lambda: stub.ModelReady(pb.ModelReadyRequest(name=name), timeout=10),
        lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name=name), timeout=10),
        lambda: stub.ModelInfer(pb.ModelInferRequest(model_name=name), timeout=10),
        lambda: stub.ModelReady(pb.ModelReadyRequest(name=MODEL, version="9" * 10_000), timeout=10),
    ):
        with pytest.raises(grpc.RpcError) as failure:
            call()
        assert failure.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
        assert len(failure.value.details()) < 300  # type: ignore[attr-defined]
