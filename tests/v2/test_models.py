"""Several models and hot reload through v2: names route, versions follow the repository's reloads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.grpc.serving import LiveServer, encode, scene

TOKEN = "v2-token"


@pytest.fixture(scope="module")
def two_models(random_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    args = ("--model", f"second={random_b0_onnx}", "--admin-token", TOKEN, "--log-level", "warning")
    server = LiveServer(random_b0_onnx, tmp_path_factory.mktemp("v2-models"), *args)
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def _infer(client: httpclient.InferenceServerClient, model: str, version: str = "") -> np.ndarray:
    tensor = httpclient.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([encode(scene(32, 48, seed=4))], dtype=object))
    outputs = [httpclient.InferRequestedOutput("mask")]
    return client.infer(model, [tensor], model_version=version, outputs=outputs).as_numpy("mask")


def test_models_by_name_and_versions_across_a_reload(two_models: LiveServer) -> None:
    rest = httpclient.InferenceServerClient(
        two_models.rest_url.removeprefix("http://"), network_timeout=120.0
    )
    grpc_client = grpcclient.InferenceServerClient(two_models.grpc_address)
    default = httpx.get(f"{two_models.rest_url}/v1/models", timeout=10).json()["default"]
    assert rest.is_model_ready("second") and grpc_client.is_model_ready(default)
    assert rest.get_model_metadata("second")["versions"] == ["1"]
    assert np.array_equal(_infer(rest, "second", "1"), _infer(rest, default))
    reload = httpx.post(
        f"{two_models.rest_url}/v1/models/second/load",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=180,
    )
    assert reload.status_code == 200, reload.text
    assert rest.get_model_metadata("second")["versions"] == ["2"]
    assert grpc_client.get_model_metadata("second").versions == ["2"]
    assert _infer(rest, "second", "2").shape == (1, 32, 48)
    with pytest.raises(InferenceServerException, match="no version '1'") as gone:
        _infer(rest, "second", "1")
    assert gone.value.status() == "404"
    with pytest.raises(InferenceServerException) as missing:
        grpc_client.is_model_ready("second", "1")
    assert missing.value.status() == "StatusCode.NOT_FOUND"
    assert rest.get_model_metadata(default)["versions"] == ["1"]  # the other model is untouched
