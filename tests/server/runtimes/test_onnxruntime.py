"""The session pool: how sessions and threads are planned, and which session a batch gets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from server.runtimes.onnxruntime import PoolPlan, SessionPool, plan_pool
from server.settings import Settings


@pytest.mark.parametrize(
    ("settings", "on_cuda", "cores", "plan"),
    [
        (Settings(), False, 2, PoolPlan(2, 1, solo_threads=2)),
        (Settings(), False, 16, PoolPlan(2, 8, solo_threads=16)),
        (Settings(), False, 1, PoolPlan(1, 1)),
        (Settings(), True, 16, PoolPlan(1, 16)),
        (Settings(intra_op_threads=3), False, 16, PoolPlan(2, 3, solo_threads=16)),
        (Settings(sessions=1), False, 2, PoolPlan(1, 2)),
        (Settings(sessions=64), False, 2, PoolPlan(64, 1)),
        (Settings(sessions=2, intra_op_threads=4), True, 16, PoolPlan(2, 4)),
    ],
)
def test_plan(settings: Settings, on_cuda: bool, cores: int, plan: PoolPlan) -> None:
    assert plan_pool(settings, on_cuda, cores) == plan


def test_solo_session_for_a_lone_request_lanes_under_load(random_b0_onnx: Path) -> None:
    pool = SessionPool(random_b0_onnx, Settings(warmup_runs=0), cores=2)
    assert (pool.size, pool.solo is not None, len(pool.sessions)) == (2, True, 3)

    async def scenario() -> None:
        solo = await pool.acquire(alone=True)
        assert solo is pool.solo and pool.busy == 1
        # while the solo session runs (every core), a lane waits for it instead of competing
        waiting = asyncio.create_task(pool.acquire(alone=False))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        pool.release(solo)
        first = await asyncio.wait_for(waiting, 1)
        assert first in pool.lanes
        # something is running: a lone request gets the other lane, side by side, not the solo session
        second = await pool.acquire(alone=True)
        assert second in pool.lanes and second is not first and pool.busy == 2
        third = asyncio.create_task(pool.acquire(alone=False))
        await asyncio.sleep(0.05)
        assert not third.done()  # both lanes busy
        pool.release(first)
        assert await asyncio.wait_for(third, 1) is first
        pool.release(second)
        pool.release(first)
        assert pool.busy == 0

    asyncio.run(scenario())
    image = np.random.default_rng(0).integers(0, 256, (1, 96, 128, 3), dtype=np.uint8)
    masks = [pool.head.run(s.run(None, {"image": image})[0][0], (96, 128)) for s in pool.sessions]
    assert all(np.array_equal(masks[0], m) for m in masks[1:])  # one graph, whatever the thread count
    pool.close()


def test_explicit_sessions_have_no_solo(random_b0_onnx: Path) -> None:
    pool = SessionPool(random_b0_onnx, Settings(sessions=1, warmup_runs=0), cores=2)
    assert pool.solo is None and pool.size == 1 and pool.plan == PoolPlan(1, 2)

    async def scenario() -> None:
        session = await pool.acquire(alone=True)
        assert session is pool.lanes[0] and pool.kind(session) == "lane"
        pool.release(session)

    asyncio.run(scenario())
    pool.close()
