"""REST ``/v2`` against the live server with tritonclient.http (and raw JSON where tritonclient can't)."""

from __future__ import annotations

import base64
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.grpc.serving import LiveServer, decode_mask, encode, scene
from tests.server.live import metric_value
from tests.v2.conftest import MODEL


@pytest.fixture
def client(rest_address: str) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(rest_address, network_timeout=120.0)


def _images(*sizes: tuple[int, int]) -> np.ndarray:
    return np.array([encode(scene(h, w, seed=i), "JPEG") for i, (h, w) in enumerate(sizes)], dtype=object)


def _image_input(images: np.ndarray) -> httpclient.InferInput:
    tensor = httpclient.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(images)
    return tensor


def test_health_metadata_and_config(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, "1")
    server = client.get_server_metadata()
    assert server["name"] == "segformer-serve"
    assert {"binary_tensor_data", "model_configuration"} <= set(server["extensions"])
    meta = client.get_model_metadata(MODEL)
    assert meta["versions"] == ["1"]
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        ("image", "BYTES", [-1]),
        ("pixels", "UINT8", [-1, -1, -1, 3]),
    ]
    assert [t["name"] for t in meta["outputs"]] == ["mask", "mask_png", "classes"]
    config = client.get_model_config(MODEL)
    assert config["max_batch_size"] == 0 and config["input"][0]["data_type"] == "TYPE_STRING"
    assert all(i["optional"] for i in config["input"])


def test_infer_bytes_binary_and_json_outputs(
    client: httpclient.InferenceServerClient, live: LiveServer
) -> None:
    images = _images((60, 80), (60, 80))
    outputs = [
        httpclient.InferRequestedOutput("mask"),
        httpclient.InferRequestedOutput("mask_png", binary_data=True),
        httpclient.InferRequestedOutput("classes", binary_data=False),
    ]
    result = client.infer(MODEL, [_image_input(images)], outputs=outputs, request_id="r1")
    mask = result.as_numpy("mask")
    assert mask.shape == (2, 60, 80) and mask.dtype == np.uint8
    for i, image in enumerate(images):
        v1 = httpx.post(f"{live.rest_url}/v1/segment", content=image, headers={"Content-Type": "image/jpeg"})
        assert np.array_equal(decode_mask(v1.content), mask[i])
        assert np.array_equal(decode_mask(result.as_numpy("mask_png")[i]), mask[i])
    classes = json.loads(result.as_numpy("classes")[0])
    assert sum(c["pixels"] for c in classes) == 60 * 80 and result.get_response()["id"] == "r1"
    json_mask = client.infer(
        MODEL,
        [_image_input(images[:1])],
        outputs=[httpclient.InferRequestedOutput("mask", binary_data=False)],
    )
    assert np.array_equal(json_mask.as_numpy("mask")[0], mask[0])


def test_infer_uint8_pixels(client: httpclient.InferenceServerClient, live: LiveServer) -> None:
    pixels = np.stack([scene(48, 64, seed=5), scene(48, 64, seed=6)])
    tensor = httpclient.InferInput("pixels", list(pixels.shape), "UINT8")
    tensor.set_data_from_numpy(pixels)
    mask = client.infer(MODEL, [tensor], outputs=[httpclient.InferRequestedOutput("mask")]).as_numpy("mask")
    png = encode(pixels[1])
    v1 = httpx.post(f"{live.rest_url}/v1/segment", content=png, headers={"Content-Type": "image/png"})
    assert mask.shape == (2, 48, 64) and np.array_equal(mask[1], decode_mask(v1.content))


def test_raw_json_request_with_base64_images(live: LiveServer) -> None:
    image = encode(scene(40, 50, seed=3), "PNG")
    body = {
        "id": "json",
        "parameters": {"mode": "resize", "timeout": 60_000_000},
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(image).decode()]}
        ],
        "outputs": [{"name": "mask_png"}, {"name": "classes"}],
    }
    answer = httpx.post(f"{live.rest_url}/v2/models/{MODEL}/versions/1/infer", json=body, timeout=120)
    assert answer.status_code == 200, answer.text
    head = answer.json()
    assert (head["id"], head["model_version"]) == ("json", "1")
    png = base64.b64decode(head["outputs"][0]["data"][0])
    assert decode_mask(png).shape == (40, 50) and json.loads(head["outputs"][1]["data"][0])


def _post(live: LiveServer, path: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{live.rest_url}{path}", content=body, headers=headers or {}, timeout=120)


def _json_input(**override: object) -> bytes:
    tensor = {
        "name": "image",
        "datatype": "BYTES",
        "shape": [1],
        "data": [base64.b64encode(encode(scene(30, 30, 1))).decode()],
    }
    return json.dumps({"inputs": [{**tensor, **override}]}).encode()


INFER = f"/v2/models/{MODEL}/infer"


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        (INFER, _json_input(datatype="FP32"), 400, "datatype BYTES"),
        (INFER, _json_input(shape=[1, 1]), 400, "shape [N]"),
        (
            INFER,
            _json_input(name="pixels", datatype="UINT8", shape=[1, 2, 2], data=[0] * 4),
            400,
            "[N, H, W, 3]",
        ),
        (INFER, json.dumps({"inputs": []}).encode(), 400, "no 'inputs'"),
        (
            INFER,
            json.dumps(
                {"inputs": json.loads(_json_input())["inputs"], "outputs": [{"name": "logits"}]}
            ).encode(),
            400,
            "unknown output",
        ),
        (INFER, _json_input(data=[base64.b64encode(b"not an image").decode()]), 400, "not a decodable image"),
        (INFER, b"{not json", 400, "malformed"),
        ("/v2/models/nope/infer", _json_input(), 404, "no model named 'nope'"),
        (f"/v2/models/{MODEL}/versions/7/infer", _json_input(), 404, "no version '7'"),
    ],
)
def test_bad_requests_answer_the_protocols_error(
    live: LiveServer, path: str, body: bytes, status: int, message: str
) -> None:
    answer = _post(live, path, body, {"Content-Type": "application/json"})
    assert answer.status_code == status and message in answer.json()["error"], answer.text
    assert set(answer.json()) == {"error"}


def test_binary_size_mismatch_and_the_server_keeps_serving(
    live: LiveServer, client: httpclient.InferenceServerClient
) -> None:
    head = json.dumps(
        {
            "inputs": [
                {"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 100}}
            ]
        }
    ).encode()
    answer = _post(
        live, INFER, head + b"\x04\x00\x00\x00abcd", {"Inference-Header-Content-Length": str(len(head))}
    )
    assert answer.status_code == 400 and "binary_data_size 100" in answer.json()["error"]
    for path in (
        "/v2/models/nope",
        f"/v2/models/{MODEL}/versions/2/ready",
        "/v2/models/nope/config",
        f"/v2/models/{MODEL}/stats",
    ):
        missing = httpx.get(f"{live.rest_url}{path}")
        assert missing.status_code == 404 and set(missing.json()) == {"error"}
    with pytest.raises(InferenceServerException, match="differ in size"):
        client.infer(
            MODEL,
            [_image_input(_images((30, 40), (40, 30)))],
            outputs=[httpclient.InferRequestedOutput("mask")],
        )
    ok = client.infer(
        MODEL,
        [_image_input(_images((30, 40), (40, 30)))],
        outputs=[httpclient.InferRequestedOutput("mask_png")],
    )
    assert [decode_mask(p).shape for p in ok.as_numpy("mask_png")] == [(30, 40), (40, 30)]
    text = live.metrics()
    assert (
        metric_value(
            text,
            "segformer_requests_total",
            transport="rest",
            endpoint="/v2/models/{model_name}/infer",
            status="200",
        )
        > 0
    )


def test_a_client_that_hangs_up_while_it_waits_is_cancelled_as_499(live: LiveServer) -> None:
    endpoint = "/v2/models/{model_name}/infer"
    before = metric_value(live.metrics(), "segformer_requests_total", endpoint=endpoint, status="499")
    image = base64.b64encode(encode(scene(480, 640, seed=9), "PNG")).decode()
    body = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [image]}]})
    # keep the sessions busy with slow native-mode work, so the v2 request is certainly still waiting
    # when its client hangs up (distinct sizes: six batches one after the other)
    blockers = [encode(scene(1024 - 16 * i, 1024, seed=10 + i), "PNG") for i in range(6)]
    with ThreadPoolExecutor(max_workers=len(blockers)) as pool:
        busy = [
            pool.submit(
                httpx.post,
                f"{live.rest_url}/v1/segment?mode=native",
                content=b,
                headers={"Content-Type": "image/png"},
                timeout=120,
            )
            for b in blockers
        ]
        time.sleep(0.2)
        head = f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {len(body)}\r\n\r\n"
        with socket.create_connection(("127.0.0.1", live.rest_port)) as sock:
            sock.sendall(head.encode() + body.encode())
            time.sleep(0.3)  # read and queued behind the blockers, then the client is gone
        assert [f.result().status_code for f in busy] == [200] * len(blockers)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        text = live.metrics()
        if metric_value(text, "segformer_requests_total", endpoint=endpoint, status="499") > before:
            break
        time.sleep(0.1)
    assert metric_value(text, "segformer_requests_total", endpoint=endpoint, status="499") == before + 1
    assert metric_value(text, "segformer_errors_total", kind="client_disconnected") >= 1
    answer = httpx.post(f"{live.rest_url}/v2/models/{MODEL}/infer", content=body, timeout=120)
    assert answer.status_code == 200, answer.text  # and the server goes on
