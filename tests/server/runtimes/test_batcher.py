"""The batcher in-process over a real session pool: cancelled and expired requests never poison a batch."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from server.errors import ServeError
from server.runtimes.batcher import Batcher
from server.runtimes.onnxruntime import SessionPool
from server.settings import Settings


def _images(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(count)]


def test_cancelled_and_expired_requests_do_not_poison_their_batch(random_b0_onnx: Path) -> None:
    pool = SessionPool(random_b0_onnx, Settings(sessions=1, warmup_runs=0))
    images = _images(6)
    alone = [pool.sessions[0].run(None, {"image": im[None]})[0][0] for im in images]  # logits

    async def scenario() -> list[object]:
        batcher = Batcher(pool, max_batch_size=8, max_queue_delay_s=0.2, max_queue_size=16)
        batcher.start()
        tasks = [asyncio.create_task(batcher.infer(im, None)) for im in images[:4]]
        expired = asyncio.create_task(batcher.infer(images[4], time.monotonic() + 0.01))
        other_key = asyncio.create_task(batcher.infer(images[5][:32], None))
        await asyncio.sleep(0.05)
        tasks[1].cancel()  # the client went away while its batch was filling
        results = await asyncio.gather(*tasks, expired, other_key, return_exceptions=True)
        assert batcher.pending == 0
        await batcher.close(5)
        return results

    results = asyncio.run(scenario())
    assert isinstance(results[1], asyncio.CancelledError)
    assert isinstance(results[4], ServeError) and results[4].status == 504
    for index in (0, 2, 3):
        logits, queued, inferred = results[index]  # type: ignore[misc]
        assert np.allclose(logits, alone[index], atol=1e-4) and queued >= 0 and inferred > 0
    assert results[5][0].shape == (150, 8, 16)  # type: ignore[index]  # another key: its own batch
    pool.close()


def test_queue_bound(random_b0_onnx: Path) -> None:
    pool = SessionPool(random_b0_onnx, Settings(sessions=1, warmup_runs=0))

    async def scenario() -> list[object]:
        batcher = Batcher(pool, max_batch_size=2, max_queue_delay_s=0.0, max_queue_size=3)
        batcher.start()
        tasks = [asyncio.create_task(batcher.infer(im, None)) for im in _images(8)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await batcher.close(5)
        return results

    results = asyncio.run(scenario())
    refused = [r for r in results if isinstance(r, ServeError)]
    assert refused and all(r.status == 503 and r.retry_after for r in refused)
    assert len(refused) < 8
    pool.close()


def test_closed_batcher_refuses(random_b0_onnx: Path) -> None:
    pool = SessionPool(random_b0_onnx, Settings(sessions=1, warmup_runs=0))

    async def scenario() -> None:
        batcher = Batcher(pool, max_batch_size=2, max_queue_delay_s=0.0, max_queue_size=3)
        batcher.start()
        await batcher.close(1)
        with pytest.raises(ServeError) as info:
            await batcher.infer(_images(1)[0], None)
        assert info.value.error == "shutting_down"

    asyncio.run(scenario())
    pool.close()
