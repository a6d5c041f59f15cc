"""perf_analyzer (Triton's load generator) runs briefly against both of our v2 protocols."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from bench import perf_analyzer
from tests.grpc.serving import LiveServer, encode, scene
from tests.v2.conftest import MODEL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def analyzer() -> list[str]:
    """perf_analyzer from .cache/perf_analyzer (fetched there on first use: PyPI, and Debian 13's glibc)."""
    return perf_analyzer.install()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images = [encode(scene(48, 64, seed=i), "JPEG") for i in range(2)]
    return perf_analyzer.input_data(images, tmp_path_factory.mktemp("pa") / "data.json")


@pytest.mark.parametrize(("protocol", "streaming"), [("grpc", False), ("http", False), ("grpc", True)])
def test_perf_analyzer_measures_us(
    analyzer: list[str], data: Path, live: LiveServer, rest_address: str, protocol: str, streaming: bool
) -> None:
    url = live.grpc_address if protocol == "grpc" else rest_address
    result = perf_analyzer.run(
        analyzer, url, protocol, MODEL, data, concurrency=2, requests=4, streaming=streaming
    )
    assert result["images_per_s"] > 0 and 0 < result["p50_ms"] <= result["p99_ms"]
    assert result["system"] == "perf_analyzer-" + ("grpc-stream" if streaming else protocol)


def test_input_data_holds_serialized_bytes_elements(tmp_path: Path) -> None:
    path = perf_analyzer.input_data([b"JPEG"], tmp_path / "d.json", name="image_bytes")
    (row,) = json.loads(path.read_text())["data"]
    assert row["image_bytes"]["shape"] == [1]
    assert base64.b64decode(row["image_bytes"]["content"]["b64"]) == b"\x04\x00\x00\x00JPEG"
