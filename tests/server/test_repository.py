"""``--model-repository``: the folder's models are served; a rescan (or the poller) follows changes."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest

from tests.server.live import Served

pytestmark = pytest.mark.slow
TOKEN = "repo-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def _names(server: Served) -> dict[str, str]:
    return {m["name"]: m["state"] for m in httpx.get(f"{server.url}/v1/models", timeout=30).json()["models"]}


def _wait(server: Served, want: dict[str, str], timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while _names(server) != want:
        assert time.monotonic() < end, f"models {_names(server)} != {want}"
        time.sleep(0.1)


def test_repository_rescan_and_poll(random_b0_onnx: Path, random_b1_19_onnx: Path, tmp_path: Path) -> None:
    repo = tmp_path / "models"
    repo.mkdir()
    shutil.copy(random_b0_onnx, repo / "scenes.onnx")
    (repo / "notes.txt").write_text("not a model")
    server = Served(
        tmp_path / "run",
        "--model-repository",
        str(repo),
        "--admin-token",
        TOKEN,
        "--repository-poll-s",
        "0.5",
    ).wait_ready()
    try:
        assert _names(server) == {"scenes": "ready"}
        assert httpx.get(f"{server.url}/v1/model", timeout=30).json()["name"] == "scenes"
        shutil.copy(random_b1_19_onnx, repo / "streets.onnx")  # the poller finds it
        _wait(server, {"scenes": "ready", "streets": "ready"})
        assert httpx.get(f"{server.url}/v1/models/streets", timeout=30).json()["num_labels"] == 19
        (repo / "streets.onnx").unlink()
        answer = httpx.post(f"{server.url}/v1/repository/rescan", headers=ADMIN, timeout=60)
        assert answer.status_code == 200
        _wait(server, {"scenes": "ready"})
        shutil.copy(random_b1_19_onnx, repo / "scenes.onnx")  # changed in place: reloaded, version 2
        end = time.monotonic() + 120
        while httpx.get(f"{server.url}/v1/models/scenes", timeout=30).json()["version"] != 2:
            assert time.monotonic() < end
            time.sleep(0.1)
        assert httpx.get(f"{server.url}/v1/models/scenes", timeout=30).json()["num_labels"] == 19
        shutil.copy(random_b1_19_onnx, repo / "streets.onnx")  # back after its unload: the next version
        _wait(server, {"scenes": "ready", "streets": "ready"})
        assert httpx.get(f"{server.url}/v1/models/streets", timeout=30).json()["version"] == 2
    finally:
        assert server.stop() == 0, server.log_tail()


def test_admin_api_is_off_without_a_token(random_b0_onnx: Path, tmp_path: Path) -> None:
    server = Served(tmp_path, "--model", str(random_b0_onnx)).wait_ready()
    try:
        answer = httpx.post(f"{server.url}/v1/models/segformer-b0-random/load", timeout=30)
        assert answer.status_code == 403 and "admin-token" in answer.json()["detail"]
        assert httpx.get(f"{server.url}/v1/models", timeout=30).json()["default"] == "segformer-b0-random"
    finally:
        assert server.stop() == 0, server.log_tail()
