"""The REST API end to end on a real server: formats, modes, model info, health, metrics."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from tests.reference import agreement, resize_like_processor
from tests.server.live import Served, image_bytes, metric_value, png_mask


@pytest.fixture(scope="module")
def graph(random_b0_onnx: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(random_b0_onnx), providers=["CPUExecutionProvider"])


def direct_mask(graph: ort.InferenceSession, data: bytes, size: tuple[int, int]) -> np.ndarray:
    """The same graph run directly: PIL bilinear resize to ``size``, output_size = original size."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    resized = resize_like_processor(rgb, size)
    feeds = {"image": resized[None], "output_size": np.array([rgb.height, rgb.width])}
    return graph.run(["mask"], feeds)[0][0]


@pytest.mark.parametrize(
    ("fmt", "height", "width", "mode"),
    [
        ("PNG", 240, 320, "resize"),
        ("JPEG", 333, 517, "resize"),
        ("PNG", 96, 64, "native"),
        ("JPEG", 200, 300, "native"),
    ],
)
def test_mask_matches_the_graph(
    served: Served, graph: ort.InferenceSession, fmt: str, height: int, width: int, mode: str
) -> None:
    data = image_bytes(height, width, fmt, seed=height)
    content_type = "image/png" if fmt == "PNG" else "image/jpeg"
    answer = httpx.post(
        f"{served.url}/v1/segment",
        params={"mode": mode},
        content=data,
        headers={"Content-Type": content_type},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png"
    mask = png_mask(answer.content)
    assert mask.shape == (height, width) and mask.dtype == np.uint8
    # resize: the processor's 512x512; native: own resolution rounded to a multiple of 32
    size = (512, 512) if mode == "resize" else (round(height / 32) * 32, round(width / 32) * 32)
    expected = direct_mask(graph, data, size)
    assert agreement(mask, expected) >= 0.999
    present = sorted(int(c) for c in answer.headers["x-segformer-classes"].split(","))
    assert present == sorted(np.unique(mask).tolist())
    assert "inference;dur=" in answer.headers["server-timing"]


def test_json_and_multipart(served: Served) -> None:
    data = image_bytes(120, 160, "PNG", seed=7)
    raw = httpx.post(
        f"{served.url}/v1/segment?mode=native",
        content=data,
        headers={"Content-Type": "image/png", "Accept": "application/json"},
        timeout=60,
    )
    assert raw.status_code == 200, raw.text
    body = raw.json()
    assert (body["width"], body["height"]) == (160, 120)
    mask = png_mask(base64.b64decode(body["mask_png_base64"]))
    assert mask.shape == (120, 160)
    assert sum(c["pixels"] for c in body["classes"]) == 120 * 160
    assert abs(sum(c["fraction"] for c in body["classes"]) - 1.0) < 1e-6
    for entry in body["classes"]:
        assert entry["pixels"] == int((mask == entry["id"]).sum())
    multipart = httpx.post(
        f"{served.url}/v1/segment",
        params={"mode": "native", "format": "json"},
        files={"image": ("frame.png", data, "image/png")},
        timeout=60,
    )
    assert multipart.status_code == 200, multipart.text
    assert multipart.json()["classes"] == body["classes"]


def _written(pid: int) -> int:
    """Bytes the process has passed to write() so far (files, pipes and sockets alike)."""
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["wchar"])


def test_a_large_multipart_upload_is_never_spooled_to_disk(served: Served) -> None:
    noise = np.random.default_rng(5).integers(0, 256, (720, 760, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG", compress_level=0)
    data = buffer.getvalue()
    assert 1024 * 1024 < len(data) < 1024 * 1024 * 1.9  # above Starlette's 1 MB spool, within the limit
    before = _written(served.proc.pid)
    answer = httpx.post(
        f"{served.url}/v1/segment",
        params={"format": "json"},
        files={"image": ("photo.png", data, "image/png")},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert (answer.json()["width"], answer.json()["height"]) == (760, 720)
    assert _written(served.proc.pid) - before < len(data) // 2  # the answer and a log line, not the file


def test_overlay(served: Served) -> None:
    data = image_bytes(64, 96, "PNG", seed=3)
    answer = httpx.post(
        f"{served.url}/v1/segment?mode=native&format=overlay",
        content=data,
        headers={"Content-Type": "image/png"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    with Image.open(io.BytesIO(answer.content)) as overlay:
        assert overlay.mode == "RGB" and overlay.size == (96, 64)


def test_model_health_docs_metrics(served: Served) -> None:
    model = httpx.get(f"{served.url}/v1/model", timeout=10).json()
    assert model["variant"] == "b0" and model["num_labels"] == len(model["classes"]) == 150
    assert model["inference_size"] == [512, 512] and model["mode"] == "resize"
    if model["runtime"] == "openvino":  # the shared server runs OpenVINO in fp32 (tests/server/conftest.py)
        assert model["providers"] == ["OpenVINO:CPU:f32"] and model["inference_precision"] == "fp32"
    else:
        assert model["runtime"] == "onnxruntime" and model["providers"] == ["CPUExecutionProvider"]
        assert model["inference_precision"] == model["precision"] == "fp32"
    assert model["exact"] and model["batching"]["max_batch_size"] == 8
    assert len(model["classes"][0]["color"]) == 3
    assert httpx.get(f"{served.url}/healthz", timeout=10).json() == {"status": "ok"}
    assert httpx.get(f"{served.url}/readyz", timeout=10).json() == {"status": "ready"}
    page = httpx.get(f"{served.url}/docs", timeout=10)
    assert page.status_code == 200 and "http" not in page.text.replace("http-equiv", "")  # nothing from a CDN
    for asset in re.findall(r'(?:src|href)="(docs/assets/[^"]+)"', page.text):
        answer = httpx.get(f"{served.url}/{asset}", timeout=10)
        assert answer.status_code == 200 and len(answer.content) > 100, asset
    assert len(re.findall("docs/assets/", page.text)) == 3
    assert httpx.get(f"{served.url}/docs/assets/index.html", timeout=10).status_code == 404
    spec = httpx.get(f"{served.url}/openapi.json", timeout=10).json()
    assert "/v1/segment" in spec["paths"]
    text = served.metrics()
    assert metric_value(text, "segformer_model_info", variant="b0", runtime=model["runtime"]) == 1
    assert metric_value(text, "segformer_requests_total", transport="rest", endpoint="/v1/model") >= 1
    for stage in ("decode", "preprocess", "queue", "inference", "encode", "total"):
        assert metric_value(text, "segformer_stage_duration_seconds_count", stage=stage) >= 1, stage
    missing = httpx.get(f"{served.url}/nope", timeout=10)
    assert missing.status_code == 404 and json.loads(missing.text)["error"] == "not_found"
