"""Images of mixed sizes batch together in ``resize`` mode (one batch key: the inference size)."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.server.live import Served, metric_value, png_mask

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]
CLIENTS = 8
PER_CLIENT = 8
# closed-loop clients send their next image only once the last answer is encoded and back, so with the
# 5 ms default a freed session starts on the first arrivals alone and the clients split into two groups
# (mean 3.2-3.8 here at 5-250 ms); a window as long as a batch's run (throughput-oriented, as Triton's
# max_queue_delay for offline work) lets them regroup. Before the split head no window helped: the
# batch key held the output size, so mixed sizes never shared a batch (mean 1.00).
QUEUE_DELAY_MS = 1000


def mixed_sizes(photos: list[Path], count: int, seed: int = 0) -> list[bytes]:
    """Real photos resized to random sizes 0.3–2.5× of 683×512 (as phone photos and cameras mix)."""
    rng = np.random.default_rng(seed)
    out = []
    for index in range(count):
        with Image.open(photos[index % len(photos)]) as image:
            scale = rng.uniform(0.3, 2.5)
            size = (max(32, round(683 * scale * rng.uniform(0.8, 1.2))), max(32, round(512 * scale)))
            buffer = io.BytesIO()
            image.convert("RGB").resize(size, Image.Resampling.BILINEAR).save(buffer, "JPEG", quality=90)
            out.append(buffer.getvalue())
    return out


def test_mixed_sizes_batch_together(real_b0_onnx: Path, real_photos: list[Path], tmp_path: Path) -> None:
    server = Served(
        tmp_path, "--model", f"ade={real_b0_onnx}", "--max-batch-size", "8", "--sessions", "1",
        "--max-queue-delay-ms", str(QUEUE_DELAY_MS), "--request-timeout-ms", "300000",
    ).wait_ready()  # fmt: skip
    bodies = mixed_sizes(real_photos, CLIENTS * PER_CLIENT)

    def client(index: int) -> list[tuple[int, tuple[int, int], tuple[int, int]]]:
        got = []
        with httpx.Client(timeout=300) as http:
            for body in bodies[index::CLIENTS]:
                answer = http.post(
                    f"{server.url}/v1/segment", content=body, headers={"Content-Type": "image/jpeg"}
                )
                with Image.open(io.BytesIO(body)) as image:
                    want = (image.height, image.width)
                shape = png_mask(answer.content).shape if answer.status_code == 200 else (0, 0)
                got.append((answer.status_code, want, shape))
        return got

    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            results = [r for rs in pool.map(client, range(CLIENTS)) for r in rs]
        text = server.metrics()
    finally:
        assert server.stop() == 0, server.log_tail()
    assert all(status == 200 and want == shape for status, want, shape in results), results
    batches = metric_value(text, "segformer_batch_size_count", model="ade")
    mean = metric_value(text, "segformer_batch_size_sum", model="ade") / batches
    assert mean >= 4, f"mean batch size {mean:.2f} over {batches:.0f} batches"
    assert metric_value(text, "segformer_stage_duration_seconds_count", model="ade", stage="mask") >= len(
        results
    )
