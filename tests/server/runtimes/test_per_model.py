"""A model's own runtime and precision (``NAME@RUNTIME@PRECISION=SOURCE``, ``name@bf16.onnx`` in a
repository), reported truly in ``/v1/models/NAME``, OIP metadata and the model-info metric; the start-up
line that names the faster precision not chosen."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import httpx
import pytest

from server.runtimes.cpufeatures import cpu_flags, has_native_bf16
from server.source import split_options
from tests.grpc.serving import free_port
from tests.server.live import Served

OPENVINO = importlib.util.find_spec("openvino") is not None
BF16 = has_native_bf16(cpu_flags())


def test_options_are_a_runtime_and_or_a_precision() -> None:
    assert split_options("ade") == ("ade", {})
    assert split_options("ade-fast@bf16") == ("ade-fast", {"precision": "bf16"})
    assert split_options("x@openvino@fp32") == ("x", {"runtime": "openvino", "precision": "fp32"})
    for bad in ("x@fast", "x@bf16@fp32", "x@"):
        with pytest.raises(ValueError, match="unknown or repeated option"):
            split_options(bad)


def test_a_bad_option_stops_the_server_before_it_listens(random_b0_onnx: Path, tmp_path: Path) -> None:
    server = Served(tmp_path, "--model", f"ade@turbo={random_b0_onnx}")
    assert server.proc.wait(timeout=120) == 2
    server.stop()
    assert server.port is None, server.log_tail()
    assert any("unknown or repeated option @turbo" in line for line in server.log), server.log_tail()


@pytest.mark.skipif(not (OPENVINO and BF16), reason="needs the openvino extra and a CPU with native bf16")
def test_one_file_two_precisions(random_b0_onnx: Path, tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    repository.mkdir()
    os.symlink(random_b0_onnx, repository / "ade-mixed@mixed.onnx")
    server = Served(
        tmp_path, "--runtime", "auto", "--model", f"ade={random_b0_onnx}",
        "--model", f"ade-fast@openvino@bf16={random_b0_onnx}", "--model-repository", str(repository),
    )  # fmt: skip
    try:
        server.wait_ready()
        described = {
            name: httpx.get(f"{server.url}/v1/models/{name}", timeout=10).json()
            for name in ("ade", "ade-fast", "ade-mixed")
        }
        metrics = server.metrics()
    finally:
        assert server.stop() == 0, server.log_tail()
    ade, fast, mixed = described["ade"], described["ade-fast"], described["ade-mixed"]
    assert (ade["runtime"], ade["inference_precision"], ade["exact"]) == ("openvino", "fp32", True)
    assert ade["providers"] == ["OpenVINO:CPU:f32"]
    assert (fast["runtime"], fast["inference_precision"], fast["exact"]) == ("openvino", "bf16", False)
    assert fast["providers"] == ["OpenVINO:CPU:bf16"]
    assert (mixed["inference_precision"], mixed["exact"]) == ("mixed", False)
    assert ade["source_sha256"] == fast["source_sha256"] == mixed["source_sha256"]
    assert 'inference_precision="bf16"' in metrics and 'inference_precision="fp32"' in metrics
    hints = [line for line in server.log if "faster, not chosen" in line]
    assert len(hints) == 1 and "bf16" in hints[0] and "docs/openvino.md" in hints[0], server.log_tail()


@pytest.mark.skipif(not OPENVINO, reason="needs the openvino extra")
def test_oip_metadata_names_the_runtime(random_b0_onnx: Path, tmp_path: Path) -> None:
    import tritonclient.grpc as grpcclient

    grpc_port = free_port()
    server = Served(
        tmp_path, "--runtime", "onnxruntime", "--model", f"ade={random_b0_onnx}",
        "--model", f"ade-ov@openvino@fp32={random_b0_onnx}", "--grpc-port", str(grpc_port), grpc=True,
    )  # fmt: skip
    try:
        server.wait_ready()
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        over_grpc = client.get_model_config("ade-ov", as_json=True)["config"]
        assert over_grpc["platform"] == over_grpc["backend"] == "openvino"
        assert client.get_model_metadata("ade-ov", as_json=True)["platform"] == "openvino"
        client.close()
        got = {
            name: (
                httpx.get(f"{server.url}/v2/models/{name}", timeout=10).json(),
                httpx.get(f"{server.url}/v2/models/{name}/config", timeout=10).json(),
            )
            for name in ("ade", "ade-ov")
        }
    finally:
        assert server.stop() == 0, server.log_tail()
    (ort_meta, ort_config), (ov_meta, ov_config) = got["ade"], got["ade-ov"]
    assert ort_meta["platform"] == ort_config["platform"] == "onnxruntime_onnx"
    assert ov_meta["platform"] == ov_config["platform"] == ov_config["backend"] == "openvino"
