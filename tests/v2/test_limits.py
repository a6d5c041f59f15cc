"""The data plane's limits and overload answers through the v2 protocols: 413, 400 too large, 503 shed
with Retry-After (RESOURCE_EXHAUSTED + retry-after), 504 (DEADLINE_EXCEEDED); the server keeps serving."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.grpc.serving import LiveServer, encode, scene
from tests.v2.conftest import MODEL

INFER = f"/v2/models/{MODEL}/infer"
MiB = 1024 * 1024


def _body(images: list[bytes], **parameters: object) -> dict[str, object]:
    data = [base64.b64encode(i).decode() for i in images]
    tensor = {"name": "image", "datatype": "BYTES", "shape": [len(images)], "data": data}
    return {"inputs": [tensor], "outputs": [{"name": "mask_png"}], "parameters": parameters}


def test_body_too_large_is_413(live: LiveServer) -> None:
    answer = httpx.post(
        f"{live.rest_url}{INFER}",
        content=b"{" + b" " * (33 * MiB),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 413 and "exceeds the limit" in answer.json()["error"]


def test_pixels_above_the_side_limit_are_400(live: LiveServer) -> None:
    pixels = np.zeros((1, 1, 16385, 3), np.uint8)
    client = httpclient.InferenceServerClient(live.rest_url.removeprefix("http://"))
    tensor = httpclient.InferInput("pixels", list(pixels.shape), "UINT8")
    tensor.set_data_from_numpy(pixels)
    with pytest.raises(InferenceServerException, match="the limits are 16384 pixels per side") as info:
        client.infer(MODEL, [tensor])
    assert info.value.status() == "400"


def test_deadline_is_504_and_deadline_exceeded(live: LiveServer) -> None:
    image = encode(scene(64, 64, seed=1))
    answer = httpx.post(f"{live.rest_url}{INFER}", json=_body([image], timeout=1), timeout=60)
    assert answer.status_code == 504 and set(answer.json()) == {"error"}
    client = grpcclient.InferenceServerClient(live.grpc_address)
    tensor = grpcclient.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([image], dtype=object))
    with pytest.raises(InferenceServerException) as info:
        client.infer(MODEL, [tensor], timeout=1)  # microseconds, sent as the "timeout" parameter
    assert info.value.status() == "StatusCode.DEADLINE_EXCEEDED"


def test_more_elements_than_the_queue_holds_are_400_then_it_serves(live: LiveServer) -> None:
    """The shared server queues 24 requests: one request of 60 elements could never be admitted (each
    element is its own data plane request), so it is a 400 naming the limit, not a 503 to retry forever."""
    images = [encode(scene(256, 256, seed=50 + i)) for i in range(60)]
    answer = httpx.post(f"{live.rest_url}{INFER}", json=_body(images, mode="native"), timeout=300)
    assert answer.status_code == 400, answer.text[:300]
    assert "--max-queue-size" in answer.json()["error"] and "retry-after" not in answer.headers
    client = grpcclient.InferenceServerClient(live.grpc_address)
    tensor = grpcclient.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=object))
    with pytest.raises(InferenceServerException) as info:
        client.infer(MODEL, [tensor], parameters={"mode": "native"}, client_timeout=300)
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    ok = httpx.post(f"{live.rest_url}{INFER}", json=_body(images[:1]), timeout=120)
    assert ok.status_code == 200 and json.loads(ok.content)["outputs"][0]["name"] == "mask_png"
