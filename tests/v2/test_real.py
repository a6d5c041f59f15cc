"""The real SegFormer-B0 ADE20K weights on real photos: v2 masks (tritonclient, both protocols) are
exactly ``/v1/segment``'s for the same images."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests.grpc.serving import LiveServer, decode_mask

pytestmark = pytest.mark.real_weights


@pytest.fixture(scope="module")
def real_live(real_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(
        real_b0_onnx, tmp_path_factory.mktemp("real-v2"), "--warmup-runs", "1", "--log-level", "warning"
    )
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def test_v2_masks_equal_v1_on_real_photos(real_live: LiveServer, real_photos: list[Path]) -> None:
    photos = np.array([p.read_bytes() for p in real_photos], dtype=object)
    model = httpx.get(f"{real_live.rest_url}/v1/model", timeout=10).json()["name"]
    rest = httpclient.InferenceServerClient(real_live.rest_url.removeprefix("http://"), network_timeout=600.0)
    rest_input = httpclient.InferInput("image", [len(photos)], "BYTES")
    rest_input.set_data_from_numpy(photos)
    by_rest = rest.infer(model, [rest_input], outputs=[httpclient.InferRequestedOutput("mask_png")])
    grpc_client = grpcclient.InferenceServerClient(real_live.grpc_address)
    grpc_input = grpcclient.InferInput("image", [len(photos)], "BYTES")
    grpc_input.set_data_from_numpy(photos)
    outputs = [grpcclient.InferRequestedOutput("mask_png"), grpcclient.InferRequestedOutput("classes")]
    by_grpc = grpc_client.infer(model, [grpc_input], outputs=outputs, client_timeout=600.0)
    for i, photo in enumerate(photos):
        v1 = httpx.post(
            f"{real_live.rest_url}/v1/segment",
            content=photo,
            headers={"Content-Type": "image/jpeg"},
            timeout=300,
        )
        expected = decode_mask(v1.content)
        assert np.array_equal(decode_mask(by_rest.as_numpy("mask_png")[i]), expected)
        assert np.array_equal(decode_mask(by_grpc.as_numpy("mask_png")[i]), expected)
        present = {int(c) for c in v1.headers["X-Segformer-Classes"].split(",")}
        assert {c["id"] for c in json.loads(by_grpc.as_numpy("classes")[i])} == present
