"""Fixtures for the server tests: a shared running server over the random-weights B0 graph."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.live import Served

#: Every serving test on the shared server runs on both runtimes (OpenVINO in fp32: exact comparisons).
RUNTIMES = [
    pytest.param("onnxruntime"),
    pytest.param(
        "openvino",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("openvino") is None, reason="the openvino extra is not installed"
        ),
    ),
]

#: The shared server's limits, small so that the limit tests are cheap.
MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_IMAGE_PIXELS = 4_000_000
MAX_QUEUE_SIZE = 16


@pytest.fixture(scope="module", params=RUNTIMES)
def served(
    request: pytest.FixtureRequest, random_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One server per test module and runtime: random B0, batches of up to 8, a short queue, small limits."""
    server = Served(
        tmp_path_factory.mktemp("served"),
        "--model", str(random_b0_onnx),
        "--runtime", request.param,
        "--precision", "fp32",
        "--max-batch-size", "8",
        "--max-queue-delay-ms", "20",
        "--max-queue-size", str(MAX_QUEUE_SIZE),
        "--max-body-bytes", str(MAX_BODY_BYTES),
        "--max-image-pixels", str(MAX_IMAGE_PIXELS),
        "--native-max-side", "512",
    )  # fmt: skip
    try:
        yield server.wait_ready()
    finally:
        code = server.stop()
        assert code == 0, server.log_tail()
        assert server.torch_modules() == []
