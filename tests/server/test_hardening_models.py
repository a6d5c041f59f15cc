"""Hardening II (issue #30) of the model lifecycle, against a real server: a broken model does not take the
server out of the load balancer, failures read in words without the server's paths, the admin API checks
its token first and refuses bad names and graphs with 400, and SIGTERM cancels a load in progress."""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import onnx
import pytest
from onnx import TensorProto, helper

from tests.server.live import Served, image_bytes

pytestmark = pytest.mark.slow
TOKEN = "hardening-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
PNG = image_bytes(48, 64, "PNG", seed=4)
IMAGE = {"Content-Type": "image/png"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models-hardening")


@pytest.fixture(scope="module")
def repo_server(random_b0_onnx: Path, workdir: Path) -> Iterator[Served]:
    """A repository with a good model and a corrupt file, and the admin API on."""
    repo = workdir / "repository"
    repo.mkdir()
    shutil.copy(random_b0_onnx, repo / "good.onnx")
    (repo / "corrupt.onnx").write_bytes(b"this is not a graph\n" * 1000)
    server = Served(workdir / "run", "--model-repository", str(repo), "--admin-token", TOKEN)
    try:
        yield server.wait_ready()  # /readyz 200 although "corrupt" failed
    finally:
        assert server.stop() == 0, server.log_tail()


def _models(server: Served) -> dict[str, dict[str, object]]:
    answer = httpx.get(f"{server.url}/v1/models", timeout=30)
    return {m["name"]: m for m in answer.json()["models"]}


def _no_paths(text: str, workdir: Path) -> None:
    assert str(workdir) not in text and not re.search(r"/(tmp|home|root)/", text), text


def test_a_corrupt_file_does_not_make_the_server_unready(repo_server: Served, workdir: Path) -> None:
    assert httpx.get(f"{repo_server.url}/readyz", timeout=10).status_code == 200
    models = _models(repo_server)
    assert models["good"]["state"] == "ready" and models["corrupt"]["state"] == "failed"
    assert "not an ONNX graph" in str(models["corrupt"]["error"])
    ready = httpx.get(f"{repo_server.url}/v1/models/corrupt/ready", timeout=10)
    assert ready.status_code == 503 and "failed" in ready.json()["detail"]
    assert httpx.get(f"{repo_server.url}/v2/models/corrupt/ready", timeout=10).status_code == 400
    assert httpx.get(f"{repo_server.url}/v2/health/ready", timeout=10).status_code == 200
    segment = httpx.post(f"{repo_server.url}/v1/models/good/segment", content=PNG, headers=IMAGE, timeout=60)
    assert segment.status_code == 200
    _no_paths(httpx.get(f"{repo_server.url}/v1/models", timeout=10).text + ready.text, workdir)


def test_a_failed_load_of_a_new_name_keeps_the_server_ready(repo_server: Served, workdir: Path) -> None:
    source = workdir / "nowhere" / "ghost.onnx"
    answer = httpx.post(
        f"{repo_server.url}/v1/models/ghost/load", json={"source": str(source)}, headers=ADMIN, timeout=60
    )
    assert answer.status_code == 400 and answer.json()["error"] == "load_failed"
    assert "ghost.onnx: no such file" in answer.json()["detail"]
    assert httpx.get(f"{repo_server.url}/readyz", timeout=10).status_code == 200
    assert _models(repo_server)["ghost"]["state"] == "failed"
    request = httpx.post(f"{repo_server.url}/v1/models/ghost/segment", content=PNG, headers=IMAGE, timeout=60)
    assert request.status_code == 503
    _no_paths(
        answer.text + request.text + httpx.get(f"{repo_server.url}/v1/models", timeout=10).text, workdir
    )


def test_an_option_as_source_is_refused_without_paths(repo_server: Served, workdir: Path) -> None:
    answer = httpx.post(
        f"{repo_server.url}/v1/models/helpme/load", json={"source": "--help"}, headers=ADMIN, timeout=60
    )
    assert answer.status_code == 400 and "is not a file, folder, hub id" in answer.json()["detail"]
    _no_paths(answer.text, workdir)


@pytest.mark.parametrize("name", ["bad%20name", "a" * 200, "-dash"])
def test_invalid_model_names_are_400(repo_server: Served, name: str) -> None:
    answer = httpx.post(
        f"{repo_server.url}/v1/models/{name}/load", json={"source": "random:b0"}, headers=ADMIN, timeout=60
    )
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_argument"
    assert "invalid model name" in answer.json()["detail"] and len(answer.json()["detail"]) < 300


def test_the_token_is_checked_before_the_body(repo_server: Served) -> None:
    url = f"{repo_server.url}/v1/models/good/load"
    headers = {"Content-Type": "application/json"}
    assert httpx.post(url, content=b"{not json", headers=headers, timeout=10).status_code == 401
    malformed = httpx.post(url, content=b"{not json", headers=headers | ADMIN, timeout=10)
    assert malformed.status_code == 400 and malformed.json()["error"] == "invalid_argument"
    for suffix in ("\x85", "\xa0"):  # Unicode whitespace is not stripped from the token
        wrong = {"Authorization": f"Bearer {TOKEN}{suffix}".encode("latin-1")}
        assert httpx.post(url, json={}, headers=wrong, timeout=10).status_code == 401


def _identity_graph(path: Path) -> Path:
    """Float NCHW in, the same out: the shape of a foreign SegFormer graph, but no network."""
    value = helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [1, 3, "h", "w"])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, "h", "w"])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["pixel_values"], ["logits"])], "identity", [value], [out]
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_bad_graphs_do_not_replace_a_served_model(repo_server: Served, workdir: Path) -> None:
    zeros = workdir / "zeros.onnx"
    with zeros.open("wb") as handle:  # 1 GiB, sparse: refused by size before anything reads it
        handle.truncate(1024**3)
    junk = workdir / "junk.onnx"
    junk.write_bytes(b"\x00" * 4096)
    cases = {
        _identity_graph(workdir / "identity.onnx"): "not a SegFormer graph",
        zeros: "--max-model-bytes",
        junk: "not an ONNX graph",
    }
    for source, words in cases.items():
        answer = httpx.post(
            f"{repo_server.url}/v1/models/good/load", json={"source": str(source)}, headers=ADMIN, timeout=120
        )
        assert answer.status_code == 400 and words in answer.json()["detail"], answer.text
        _no_paths(answer.text, workdir)
    good = httpx.get(f"{repo_server.url}/v1/models/good", timeout=10).json()
    assert good["version"] == 1 and good["num_labels"] == 150


def test_sigterm_cancels_an_export_in_progress(random_b0_onnx: Path, tmp_path: Path) -> None:
    server = Served(tmp_path, "--model", str(random_b0_onnx), "--admin-token", TOKEN).wait_ready()
    answers: list[httpx.Response] = []

    def load() -> None:  # random:b0 is exported by segformer-export in a subprocess: seconds
        url = f"{server.url}/v1/models/fresh/load"
        answers.append(httpx.post(url, json={"source": "random:b0"}, headers=ADMIN, timeout=120))

    loader = threading.Thread(target=load)
    loader.start()
    try:
        end = time.monotonic() + 60
        while not any("exporting random:b0" in line for line in server.log):
            assert time.monotonic() < end, server.log_tail()
            time.sleep(0.05)
        time.sleep(0.5)
        start = time.monotonic()
        status = server.stop(timeout=60)
        stopped = time.monotonic() - start
    finally:
        loader.join(timeout=60)
    assert status == 0, server.log_tail()
    assert stopped < 10, f"SIGTERM took {stopped:.1f} s with an export in progress"
    assert answers and answers[0].status_code == 503, answers
    assert answers[0].json()["error"] == "shutting_down" and "cancelled" in answers[0].json()["detail"]
    assert "Traceback" not in "\n".join(server.log), server.log_tail()
