"""Real weights through the HTTP API against transformers' reference pipeline; a foreign int8 ONNX served."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.reference import ReferencePipeline, agreement
from tests.server.live import Served, png_mask

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]


@pytest.fixture(scope="module")
def reference(real_weights_dir: Path) -> ReferencePipeline:
    return ReferencePipeline.load(real_weights_dir)


@pytest.fixture(scope="module")
def real_server(real_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(tmp_path_factory.mktemp("real"), "--model", str(real_b0_onnx))
    try:
        yield server.wait_ready()
    finally:
        assert server.stop() == 0, server.log_tail()


def segment(server: Served, photo: Path) -> httpx.Response:
    answer = httpx.post(
        f"{server.url}/v1/segment",
        content=photo.read_bytes(),
        headers={"Content-Type": "image/jpeg"},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    return answer


def test_real_weights_match_the_reference(
    real_server: Served, reference: ReferencePipeline, real_photos: list[Path]
) -> None:
    scores = {}
    for photo in real_photos:
        mask = png_mask(segment(real_server, photo).content)
        with Image.open(photo) as image:
            expected = reference.mask(image)
        scores[photo.name] = agreement(mask, expected)
    print("agreement with the reference pipeline:", scores)
    assert min(scores.values()) >= 0.999, scores
    model = httpx.get(f"{real_server.url}/v1/model", timeout=10).json()
    assert model["classes"][0]["label"] == "wall" and not model["foreign"]


def test_foreign_int8_onnx_is_wrapped_and_served(
    shared_dir: Path, reference: ReferencePipeline, real_photos: list[Path], tmp_path: Path
) -> None:
    foreign = shared_dir / "weights" / "segformer-b0-ade20k-int8.onnx"
    server = Served(tmp_path, "--model", str(foreign), "--max-batch-size", "4")
    try:
        server.wait_ready()
        model = httpx.get(f"{server.url}/v1/model", timeout=10).json()
        assert model["foreign"] and model["num_labels"] == 150 and model["classes"][0]["label"] == "wall"
        assert model["batching"]["max_batch_size"] == 1  # the graph's batch dimension is fixed at 1
        assert model["modes"] == ["resize"]
        photo = real_photos[0]
        mask = png_mask(segment(server, photo).content)
        with Image.open(photo) as image:
            expected = reference.mask(image)
        score = agreement(mask, expected)
        print(f"int8 foreign graph vs fp32 reference on {photo.name}: {score:.4f}")
        assert score >= 0.9  # int8 quantisation, same network
        native = httpx.post(
            f"{server.url}/v1/segment?mode=native",
            content=photo.read_bytes(),
            headers={"Content-Type": "image/jpeg"},
            timeout=60,
        )
        assert native.status_code == 400 and native.json()["error"] == "invalid_argument"
    finally:
        assert server.stop() == 0, server.log_tail()
    assert server.torch_modules() == []
