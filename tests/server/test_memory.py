"""One request cannot take the server's memory: a 36 Mpx PNG, three at once, many sizes (RSS measured)."""

from __future__ import annotations

import asyncio
import io
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from server.app import Server
from server.outputs.base import options
from server.outputs.formats import FORMATS
from server.settings import Settings
from server.types import SegmentRequest
from tests.server.live import Served, image_bytes

pytestmark = pytest.mark.slow
MB = 1024 * 1024


def rss(pid: int, field: str = "VmRSS") -> int:
    """Bytes of ``field`` (VmRSS now, VmHWM peak since the last ``reset_peak``) of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def big_png(side: int = 6000) -> bytes:
    """A 36 Mpx PNG that compresses to ~100 KB (a few flat regions), as in the report."""
    small = np.random.default_rng(3).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((side, side), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def post(url: str, body: bytes, fmt: str = "png") -> int:
    answer = httpx.post(
        f"{url}/v1/segment?format={fmt}", content=body, headers={"Content-Type": "image/png"}, timeout=300
    )
    assert answer.status_code == 200, answer.text
    return len(answer.content)


@pytest.fixture(scope="module")
def server(random_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Served:
    served = Served(
        tmp_path_factory.mktemp("memory"), "--model", str(random_b0_onnx), "--request-timeout-ms", "300000"
    )
    served.wait_ready()
    yield served
    assert served.stop() == 0, served.log_tail()


def _settle(pid: int, target: int, seconds: float = 5.0) -> int:
    end = time.monotonic() + seconds
    while rss(pid) > target and time.monotonic() < end:
        time.sleep(0.1)
    return rss(pid)


def test_a_36_megapixel_png_is_bounded_and_given_back(server: Served) -> None:
    pid, body = server.proc.pid, big_png()
    assert len(body) < 400_000
    post(server.url, image_bytes(256, 256))  # warm paths
    before = rss(pid)
    for fmt in ("png", "overlay", "json"):
        reset_peak(pid)
        post(server.url, body, fmt)
        peak = rss(pid, "VmHWM")
        assert peak <= 1200 * MB, f"{fmt}: peak RSS {peak / MB:.0f} MB"
        after = _settle(pid, int(before * 1.10))
        assert after <= before * 1.10, f"{fmt}: RSS {before / MB:.0f} -> {after / MB:.0f} MB 5 s later"


def test_three_at_once_stay_under_2_gb(server: Served) -> None:
    """Peak under 2 GB; what stays afterwards is the session arena sized for the two lanes running side
    by side (once, at the inference size), not the images: a second round adds nothing."""
    pid, body = server.proc.pid, big_png()
    settled = []
    for _ in range(2):
        reset_peak(pid)
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda _: post(server.url, body), range(3)))
        peak = rss(pid, "VmHWM")
        assert peak <= 2048 * MB, f"peak RSS {peak / MB:.0f} MB for three 36 Mpx images at once"
        time.sleep(2)
        settled.append(rss(pid))
    assert settled[1] <= settled[0] * 1.10, f"RSS after each round: {[s // MB for s in settled]} MB"


def test_many_sizes_do_not_grow_memory(server: Served) -> None:
    pid = server.proc.pid
    rng = np.random.default_rng(5)
    sizes = [(int(rng.integers(32, 1601)), int(rng.integers(32, 1601))) for _ in range(120)]
    samples = []
    for index, (height, width) in enumerate(sizes):
        post(server.url, image_bytes(height, width, "PNG", seed=index))
        samples.append(rss(pid))
    settled, last = np.median(samples[30:60]), np.median(samples[-30:])
    assert last <= settled * 1.10, f"RSS grew from {settled / MB:.0f} to {last / MB:.0f} MB over varied sizes"


def test_tune_malloc_turns_off_numpy_huge_page_advice() -> None:
    """In a fresh interpreter (it changes the process's allocator): glibc tuned, and numpy no longer asks
    for transparent huge pages on large arrays (direct-compaction stalls: server/memory.py)."""
    import subprocess
    import sys

    code = (
        "from server.memory import numpy_hugepage_setter, tune_malloc\n"
        "assert tune_malloc()\n"
        "print(numpy_hugepage_setter()(False))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_image_blocks_are_reused_while_busy_and_given_back_by_trim() -> None:
    """In a fresh interpreter: with the cache (``--image-cache-mib``) a second 12 Mpx decode reuses the
    first one's blocks (no fresh pages to fault in), and ``trim`` (the idle server's) empties it."""
    import subprocess
    import sys

    code = (
        "import io\n"
        "from PIL import Image\n"
        "from server.memory import MiB, cache_image_memory, trim\n"
        "assert cache_image_memory(128 * MiB) == 8\n"
        "buffer = io.BytesIO()\n"
        "Image.new('RGB', (4032, 3024), (40, 90, 160)).save(buffer, 'JPEG')\n"
        "for _ in range(2):\n"
        "    Image.open(io.BytesIO(buffer.getvalue())).convert('RGB').load()\n"
        "stats = Image.core.get_stats()\n"
        "trim()\n"
        "print(stats['reused_blocks'], Image.core.get_stats()['blocks_cached'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    reused, cached = map(int, out.stdout.split())
    assert reused >= 3 and cached == 0  # 48 MB of RGBX in 16 MiB blocks: three reused


def test_native_mode_gives_a_large_shape_back(server: Served) -> None:
    """Native mode at 1024 px needs ~13x the inference memory of the inference size (SegFormer's stage-1
    attention): once answered, the arena regions it grew are given back (issue #30), whatever the shape."""
    pid = server.proc.pid

    def native(height: int, width: int, seed: int) -> None:
        answer = httpx.post(
            f"{server.url}/v1/segment?mode=native",
            content=image_bytes(height, width, "PNG", seed=seed),
            headers={"Content-Type": "image/png"},
            timeout=300,
        )
        assert answer.status_code == 200, answer.text

    native(64, 64, 0)
    before = rss(pid)
    for index, (height, width) in enumerate([(1024, 1024), (992, 1024), (1024, 960), (960, 992)]):
        native(height, width, index)
        after = rss(pid)
        assert after <= before * 1.10 + 20 * MB, (
            f"{height}x{width}: RSS {before / MB:.0f} -> {after / MB:.0f} MB"
        )


async def _held_images(settings: Settings, photo: bytes) -> dict[str, bool]:
    """Whether a result holds the decoded pixels, per format, through a started in-process ``Server``."""
    server = Server(settings)
    await server.start()
    try:
        while not server.dataplane.is_ready():
            await asyncio.sleep(0.05)
        held = {}
        for fmt in FORMATS.formats:
            if fmt.needs_classes:
                continue
            request = SegmentRequest(photo, keep_logits=fmt.needs_logits, keep_image=fmt.needs_image)
            result = await server.dataplane.segment(request)
            held[fmt.name] = result.image is not None
            assert fmt.encode(result, options(None, 0.0, 0.0, 0.5)).data  # and each still encodes
        return held
    finally:
        await server.stop()


def test_only_the_overlay_keeps_the_decoded_pixels(random_b0_onnx: Path, tmp_path: Path) -> None:
    """The decoded image (48 MB for a 12 Mpx photo) is dropped once resized unless the format draws on it:
    requests in flight hold their model input, logits and mask, not their pixels (issues #24, #26)."""
    common = {"model": [str(random_b0_onnx)], "host": "127.0.0.1", "port": 0, "grpc_port": 0}
    common |= {"cache_dir": tmp_path, "warmup_runs": 0, "runtime": "onnxruntime", "demo": False}
    held = asyncio.run(_held_images(Settings(**common), image_bytes(300, 400, "JPEG", seed=5)))
    assert held == {name: name == "overlay" for name in held} and "overlay" in held and "png" in held
