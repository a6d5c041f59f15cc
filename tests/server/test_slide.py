"""``mode=slide`` against a sliding-window reference written here with transformers (mmseg's semantics)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from server.slide import coverage, upsample_rows, windows_1d
from tests.reference import ReferencePipeline, agreement
from tests.server.live import Served, metric_value, png_mask

CROP, STRIDE = 512, 384  # the server's defaults for a 512x512 model: crop = inference size, stride 3/4


def mmseg_windows(size: int, crop: int, stride: int) -> list[tuple[int, int]]:
    """``EncoderDecoder.slide_inference``'s loop, written out (one axis)."""
    grids = max(size - crop + stride - 1, 0) // stride + 1
    out = []
    for index in range(grids):
        start = index * stride
        end = min(start + crop, size)
        out.append((max(end - crop, 0), end))
    return out


CASES = [
    (2048, 1024, 768),
    (1024, 1024, 768),
    (700, 512, 384),
    (300, 512, 384),
    (4096, 512, 384),
    (513, 512, 1),
]


@pytest.mark.parametrize(("size", "crop", "stride"), CASES)
def test_windows_follow_mmseg(size: int, crop: int, stride: int) -> None:
    windows = windows_1d(size, crop, stride)
    assert windows == mmseg_windows(size, crop, stride)
    assert windows[0][0] == 0 and windows[-1][1] == size and coverage(size, windows).min() >= 1


def test_upsampling_rows_is_torch_bilinear() -> None:
    torch = pytest.importorskip("torch")
    logits = np.random.default_rng(0).normal(size=(5, 32, 40)).astype(np.float32)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(logits)[None], size=(128, 157), mode="bilinear", align_corners=False
    )[0].numpy()
    bands = [upsample_rows(logits, (128, 157), (start, min(128, start + 19))) for start in range(0, 128, 19)]
    assert np.abs(np.concatenate(bands, axis=1) - expected).max() < 1e-5


def reference_slide(ref: ReferencePipeline, image: np.ndarray, strip: int = 256) -> np.ndarray:
    """Logits of every crop (transformers), upsampled to the crop, summed, divided by the count, argmax."""
    import torch
    import torch.nn.functional as F

    height, width = image.shape[:2]
    rows, cols = mmseg_windows(height, CROP, STRIDE), mmseg_windows(width, CROP, STRIDE)
    mean = np.asarray(ref.processor.image_mean, np.float32)
    std = np.asarray(ref.processor.image_std, np.float32)
    logits = {}
    with torch.inference_mode():
        for gi, (y1, y2) in enumerate(rows):
            for wi, (x1, x2) in enumerate(cols):
                crop = (image[y1:y2, x1:x2].astype(np.float32) / 255 - mean) / std
                pixels = torch.from_numpy(crop.transpose(2, 0, 1).copy())[None]
                logits[gi, wi] = ref.model(pixel_values=pixels).logits
        count = torch.from_numpy(coverage(height, rows)[:, None] * coverage(width, cols)[None, :])
        mask = np.empty((height, width), np.int64)
        classes = next(iter(logits.values())).shape[1]
        for s0 in range(0, height, strip):
            s1 = min(height, s0 + strip)
            total = torch.zeros((classes, s1 - s0, width))
            for gi, (y1, y2) in enumerate(rows):
                lo, hi = max(y1, s0), min(y2, s1)
                if lo >= hi:
                    continue
                for wi, (x1, x2) in enumerate(cols):
                    up = F.interpolate(
                        logits[gi, wi], size=(y2 - y1, x2 - x1), mode="bilinear", align_corners=False
                    )
                    total[:, lo - s0 : hi - s0, x1:x2] += up[0, :, lo - y1 : hi - y1]
            mask[s0:s1] = (total / count[s0:s1]).argmax(dim=0).numpy()
    return mask


@pytest.fixture(scope="module")
def slide_server(real_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(
        tmp_path_factory.mktemp("slide"), "--model", f"ade={real_b0_onnx}", "--max-batch-size", "8",
        "--request-timeout-ms", "600000", "--max-body-bytes", str(64 << 20),
    )  # fmt: skip
    try:
        yield server.wait_ready()
    finally:
        assert server.stop() == 0, server.log_tail()


def _enlarged(photo: Path, size: tuple[int, int]) -> bytes:
    with Image.open(photo) as image:
        big = image.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


@pytest.mark.real_weights
@pytest.mark.slow
@pytest.mark.parametrize("size", [(2048, 1024), (4096, 3072)])
def test_slide_matches_the_reference(
    slide_server: Served, real_weights_dir: Path, real_photos: list[Path], size: tuple[int, int]
) -> None:
    body = _enlarged(real_photos[0], size)
    before = slide_server.metrics()
    answer = httpx.post(
        f"{slide_server.url}/v1/segment?mode=slide",
        content=body,
        headers={"Content-Type": "image/jpeg"},
        timeout=600,
    )
    assert answer.status_code == 200, answer.text
    mask = png_mask(answer.content)
    assert mask.shape == (size[1], size[0])
    with Image.open(io.BytesIO(body)) as decoded:
        expected = reference_slide(
            ReferencePipeline.load(real_weights_dir), np.asarray(decoded.convert("RGB"))
        )
    assert agreement(mask, expected) >= 0.999
    after = slide_server.metrics()
    windows = len(mmseg_windows(size[1], CROP, STRIDE)) * len(mmseg_windows(size[0], CROP, STRIDE))
    ran = metric_value(after, "segformer_slide_windows_total", model="ade") - metric_value(
        before, "segformer_slide_windows_total", model="ade"
    )
    assert ran == windows
    batches = metric_value(after, "segformer_batch_size_count", model="ade") - metric_value(
        before, "segformer_batch_size_count", model="ade"
    )
    assert batches < windows, f"{windows} windows ran in {batches} batches: not batched"


@pytest.mark.real_weights
@pytest.mark.slow
def test_too_many_windows_is_413_before_decoding(slide_server: Served, real_photos: list[Path]) -> None:
    body = _enlarged(real_photos[0], (8192, 4096))  # 21 x 11 = 231 windows > 128
    answer = httpx.post(
        f"{slide_server.url}/v1/segment?mode=slide",
        content=body,
        headers={"Content-Type": "image/jpeg"},
        timeout=120,
    )
    assert answer.status_code == 413
    windows = len(mmseg_windows(8192, CROP, STRIDE)) * len(mmseg_windows(4096, CROP, STRIDE))
    assert answer.json()["error"] == "too_many_windows" and f"{windows} windows" in answer.json()["detail"]
    assert httpx.get(f"{slide_server.url}/v1/models/ade", timeout=30).json()["modes"] == [
        "resize",
        "native",
        "slide",
    ]
