"""A live source faster than the server: the newest frame goes, the rest are counted as skipped, the
latency stays bounded and memory does not grow (the library path ``segformer-client video`` takes)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from client import SegformerClient
from client.frames import Frame
from client.pipeline import Latencies, Request, segment_frames
from client.video.live import Newest, paced
from tests.grpc.serving import LiveServer, scene

SECONDS = 6.0
INFLIGHT = 2


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def camera(seconds: float, interval_s: float = 0.002) -> Iterator[Frame]:
    """A fake camera at ~500 fps (frames of 240x320, each a fresh array) for ``seconds``."""
    scenes = [scene(240, 320, seed=700 + i) for i in range(8)]
    start, index = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        yield Frame(index, f"{index:06d}", rgb=scenes[index % 8].copy(), pts=index)
        index += 1
        time.sleep(interval_s)


def test_a_fast_live_source_skips_frames_and_keeps_latency_and_memory_flat(live: LiveServer) -> None:
    newest = Newest(camera(SECONDS))
    latencies, indices, rss = Latencies(), [], []
    started = time.perf_counter()
    with SegformerClient(f"grpc://{live.grpc_address}", timeout=60) as client:
        request = Request(mode="native", mask_format="raw", inflight=INFLIGHT)
        for frame, seg in segment_frames(client, newest, request):
            assert seg.ok, seg.error
            latency = time.perf_counter() - frame.captured
            latencies.add(latency)
            indices.append((frame.index, latency, time.perf_counter() - started))
            rss.append(_rss_mb())
    newest.close()
    answered = len(indices)
    assert answered >= 10, "the server answered a few frames per second at least"
    assert newest.skipped > answered, (newest.skipped, answered)
    assert newest.captured == answered + newest.skipped  # each frame either sent or counted as skipped
    frame_ids = [i for i, _, _ in indices]
    assert frame_ids == sorted(set(frame_ids)), "in order, each once"
    # bounded: no frame waits for more than the frames in flight ahead of it (plus slack for a noisy
    # machine), and the second half is no slower than the first (a backlog would grow linearly)
    service = SECONDS / answered
    assert max(lat for _, lat, _ in indices) < (INFLIGHT + 1) * service * 4 + 1.0
    first = [lat for _, lat, t in indices if t < SECONDS / 2]
    second = [lat for _, lat, t in indices if t >= SECONDS / 2]
    assert np.median(second) < 2 * np.median(first) + 0.2
    # ~2.5 k frames of 230 kB were produced: a backlog would hold hundreds of MB
    third = len(rss) // 3
    assert max(rss[third:]) - rss[third] < 40, (rss[third], max(rss[third:]))


def test_a_file_replayed_live_is_paced_at_its_frame_rate() -> None:
    frames = [Frame(i, f"{i:06d}", rgb=np.zeros((2, 2, 3), np.uint8), pts=i) for i in range(5)]  # 25 fps
    start = time.perf_counter()
    taken = [f.captured - start for f in paced(frames)]
    assert taken[-1] >= 4 / 25 - 0.005 and all(b > a for a, b in itertools.pairwise(taken))
