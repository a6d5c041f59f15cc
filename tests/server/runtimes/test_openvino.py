"""The OpenVINO pool: the graph as OpenVINO reads it, the streams plan, output_size, the bf16 check."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from server.runtimes.cpufeatures import cpu_flags, has_native_bf16
from server.runtimes.onnxruntime import PoolPlan
from server.settings import Settings

ov = pytest.importorskip("openvino", reason="the openvino extra is not installed")

from server.runtimes.openvino import OpenVinoPool, openvino_plan  # noqa: E402  (needs openvino)


@pytest.mark.parametrize(
    ("settings", "cores", "plan"),
    [
        (Settings(), 2, PoolPlan(1, 2)),
        (Settings(), 16, PoolPlan(1, 16)),
        (Settings(), 1, PoolPlan(1, 1)),
        (Settings(sessions=1), 16, PoolPlan(1, 16)),
        (Settings(sessions=4, intra_op_threads=3), 16, PoolPlan(4, 3)),
    ],
)
def test_plan_is_streams(settings: Settings, cores: int, plan: PoolPlan) -> None:
    assert openvino_plan(settings, cores) == plan


def test_fp32_pool_matches_onnxruntime_at_any_output_size(random_b0_onnx: Path) -> None:
    pool = OpenVinoPool(random_b0_onnx, Settings(), "fp32", cores=2)
    # one stream of both cores, two infer requests on it, no solo
    assert (pool.size, pool.plan.lane_threads, pool.plan.solo_threads, len(pool.lanes)) == (1, 2, 0, 2)
    assert pool.spec.num_labels == 150 and pool.spec.inference_size == (512, 512)
    assert pool.precision == "fp32" and pool.check.agreement is None and not pool.check.fallback
    session = ort.InferenceSession(str(random_b0_onnx), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 256, 320, 3), dtype=np.uint8)

    async def scenario() -> list[np.ndarray]:
        lone = await pool.acquire(alone=True)
        assert pool.kind(lone) == "lane" and pool.busy == 1
        first = await pool.run(lone, images[:1])
        pool.release(lone)
        lanes = [await pool.acquire(), await pool.acquire()]
        assert {pool.kind(lane) for lane in lanes} == {"lane"} and pool.busy == 2
        both = await asyncio.gather(*(pool.run(lane, images) for lane in lanes))
        for lane in lanes:
            pool.release(lane)
        assert pool.busy == 0
        return [first, *both]

    try:
        first, batch, again = asyncio.run(scenario())
    finally:
        pool.close()
    assert first.shape == (1, 150, 64, 80) and batch.shape == again.shape == (2, 150, 64, 80)
    assert np.array_equal(batch, again) and first.dtype == np.float32
    for index, logits, size in ((0, first[0], (100, 70)), (1, batch[1], (301, 17))):  # body + head = graph
        feeds = {"image": images[index : index + 1], "output_size": np.array(size)}
        (expected,) = session.run(["mask"], feeds)
        assert np.mean(pool.head.run(logits, size) == expected[0]) > 0.999


@pytest.mark.skipif(not has_native_bf16(cpu_flags()), reason="this CPU has no native bf16")
def test_bf16_below_the_threshold_falls_back_to_fp32(random_b0_onnx: Path) -> None:
    pool = OpenVinoPool(random_b0_onnx, Settings(bf16_min_agreement=1.0, sessions=1), "bf16", cores=2)
    try:
        assert pool.check.asked == "bf16" and pool.check.agreement is not None
        assert pool.check.agreement < 1.0 and pool.check.fallback
        assert pool.precision == "fp32" and pool.providers == ["OpenVINO:CPU:f32"] and pool.size == 1
    finally:
        pool.close()
