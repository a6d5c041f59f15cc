"""Hot reload under load: 8 clients on model A for 20 s while A is reloaded 3 times and B comes and goes."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.server.live import Served, png_mask

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]
TOKEN = "reload-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
CLIENTS = 8
LOAD_SECONDS = 20.0


def _mask(url: str, image: bytes, model: str = "a") -> np.ndarray:
    answer = httpx.post(
        f"{url}/v1/models/{model}/segment", content=image, headers={"Content-Type": "image/jpeg"}, timeout=120
    )
    assert answer.status_code == 200, answer.text
    return png_mask(answer.content)


def _description(url: str, model: str = "a") -> dict:
    return httpx.get(f"{url}/v1/models/{model}", timeout=30).json()


def test_reload_under_load_fails_no_request(
    real_b0_onnx: Path,
    random_b0_onnx: Path,
    random_b1_19_onnx: Path,
    real_photos: list[Path],
    tmp_path: Path,
) -> None:
    server = Served(
        tmp_path, "--model", f"a={real_b0_onnx}", "--admin-token", TOKEN, "--request-timeout-ms", "300000"
    ).wait_ready()
    image = real_photos[0].read_bytes()
    statuses: Counter[int] = Counter()
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=120) as http:
            while not stop.is_set():
                answer = http.post(
                    f"{server.url}/v1/models/a/segment", content=image, headers={"Content-Type": "image/jpeg"}
                )
                statuses[answer.status_code] += 1

    try:
        first = _description(server.url)
        first_mask = _mask(server.url, image)
        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        versions = [first]
        for round_, source in enumerate((random_b0_onnx, real_b0_onnx, random_b0_onnx)):
            answer = httpx.post(
                f"{server.url}/v1/models/a/load", json={"source": str(source)}, headers=ADMIN, timeout=180
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["version"] == round_ + 2
            versions.append(_description(server.url))
            if round_ == 0:  # B comes and goes while A serves
                added = httpx.post(
                    f"{server.url}/v1/models/b/load",
                    json={"source": str(random_b1_19_onnx)},
                    headers=ADMIN,
                    timeout=180,
                )
                assert added.status_code == 200, added.text
                assert _description(server.url, "b")["num_labels"] == 19
            if round_ == 1:
                assert (
                    httpx.post(f"{server.url}/v1/models/b/unload", headers=ADMIN, timeout=180).status_code
                    == 200
                )
                assert httpx.get(f"{server.url}/v1/models/b", timeout=30).status_code == 404
        while time.monotonic() - started < LOAD_SECONDS:
            time.sleep(0.2)
        stop.set()
        for thread in threads:
            thread.join(timeout=180)
        last_mask = _mask(server.url, image)
    finally:
        stop.set()
        code = server.stop()
    assert code == 0, server.log_tail()
    assert set(statuses) == {200}, f"non-200 answers for A during the reloads: {dict(statuses)}"
    assert sum(statuses.values()) >= CLIENTS
    # the versions switched: the weights' hash follows the source, and so do the masks
    hashes = [v["source_sha256"] for v in versions]
    assert [v["version"] for v in versions] == [1, 2, 3, 4]
    assert hashes[0] == hashes[2] != hashes[1] == hashes[3]
    assert (last_mask != first_mask).mean() > 0.05  # random weights now: a different mask
    assert server.torch_modules() == []
