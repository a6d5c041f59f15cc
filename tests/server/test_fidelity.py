"""Real weights through the HTTP API against transformers' reference pipeline; a foreign int8 ONNX served."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from server.runtimes.cpufeatures import cpu_flags, has_native_bf16
from tests.reference import ReferencePipeline, agreement
from tests.server.live import Served, png_mask

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]


@pytest.fixture(scope="module")
def reference(real_weights_dir: Path) -> ReferencePipeline:
    return ReferencePipeline.load(real_weights_dir)


_NO_OPENVINO = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="the openvino extra is not installed"
)
_NO_BF16 = pytest.mark.skipif(
    not has_native_bf16(cpu_flags()), reason="this CPU has no native bf16 (AMX-BF16 / AVX512-BF16)"
)
#: (runtime, precision, the least mask agreement with the reference pipeline on every photo)
SERVINGS = [
    pytest.param(("onnxruntime", "fp32", 0.999), id="onnxruntime-fp32"),
    pytest.param(("openvino", "fp32", 0.999), id="openvino-fp32", marks=_NO_OPENVINO),
    # the default on AMX: stages 1-3 bf16, stage 4 + decode head fp32 (``auto`` must pick it)
    pytest.param(("openvino", "auto", 0.995), id="openvino-mixed", marks=[_NO_OPENVINO, _NO_BF16]),
    # pure bf16 is opt-in: 99.3 % on the upscaled crop (docs/openvino.md's trade-off table)
    pytest.param(("openvino", "bf16", 0.99), id="openvino-bf16", marks=[_NO_OPENVINO, _NO_BF16]),
]


@pytest.fixture(scope="module", params=SERVINGS)
def real_server(
    request: pytest.FixtureRequest, real_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Served, str, float]]:
    runtime, precision, minimum = request.param
    server = Served(
        tmp_path_factory.mktemp("real"), "--model", str(real_b0_onnx), "--runtime", runtime,
        "--precision", precision,
    )  # fmt: skip
    try:
        yield server.wait_ready(), precision, minimum
    finally:
        assert server.stop() == 0, server.log_tail()


@pytest.fixture(scope="module")
def fidelity_photos(real_photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The real photos plus two made from them: a wide street-like 1024x512 stretch and an upscaled crop."""
    folder = tmp_path_factory.mktemp("derived")
    with Image.open(real_photos[0]) as first, Image.open(real_photos[-1]) as last:
        wide, crop = folder / "stretched-1024x512.jpg", folder / "crop-upscaled-900x600.jpg"
        first.convert("RGB").resize((1024, 512), Image.Resampling.BICUBIC).save(wide, quality=95)
        box = (100, 100, 400, 300)
        last.convert("RGB").crop(box).resize((900, 600), Image.Resampling.BICUBIC).save(crop, quality=95)
    return [*real_photos, wide, crop]


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
    real_server: tuple[Served, str, float], reference: ReferencePipeline, fidelity_photos: list[Path]
) -> None:
    server, served, minimum = real_server
    scores = {}
    for photo in fidelity_photos:
        mask = png_mask(segment(server, photo).content)
        with Image.open(photo) as image:
            expected = reference.mask(image)
        scores[photo.name] = agreement(mask, expected)
    model = httpx.get(f"{server.url}/v1/model", timeout=10).json()
    serving = f"{model['runtime']} {model['inference_precision']}"
    print(f"{serving}: agreement with the reference pipeline:", scores)
    assert min(scores.values()) >= minimum, scores
    assert model["classes"][0]["label"] == "wall" and not model["foreign"]
    if model["runtime"] == "openvino":  # auto is the mixed plan on this CPU
        assert model["inference_precision"] == (served if served != "auto" else "mixed"), model
    check = model["precision_check"]
    if model["inference_precision"] in ("mixed", "bf16"):
        assert not check["fallback"] and check["agreement"] >= 0.9, check


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
