"""Several models in one server (real B0 ADE20K + random B1 with 19 classes), over REST and gRPC."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.grpc.gen import segmentation_pb2 as pb
from server.grpc.gen import segmentation_pb2_grpc as pb_grpc
from tests.grpc.serving import free_port
from tests.server.live import Served, metric_value

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]
TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def two(
    real_b0_onnx: Path, random_b1_19_onnx: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    grpc_port = free_port()
    server = Served(
        tmp_path_factory.mktemp("two"),
        "--model", f"ade={real_b0_onnx}",
        "--model", f"street={random_b1_19_onnx}",
        "--admin-token", TOKEN,
        "--grpc-port", str(grpc_port),
        grpc=True,
    )  # fmt: skip
    server.grpc_port = grpc_port  # type: ignore[attr-defined]
    try:
        yield server.wait_ready()
    finally:
        assert server.stop() == 0, server.log_tail()
        assert server.torch_modules() == []


@pytest.fixture
def stub(two: Served) -> Iterator[pb_grpc.SegmentationServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{two.grpc_port}") as channel:  # type: ignore[attr-defined]
        yield pb_grpc.SegmentationServiceStub(channel)


def _segment(server: Served, photo: Path, model: str | None) -> dict:
    path = "/v1/segment" if model is None else f"/v1/models/{model}/segment"
    answer = httpx.post(
        f"{server.url}{path}?format=json",
        content=photo.read_bytes(),
        headers={"Content-Type": "image/jpeg"},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_models_are_listed_and_described(two: Served) -> None:
    listing = httpx.get(f"{two.url}/v1/models", timeout=30).json()
    assert listing["default"] == "ade"
    by_name = {m["name"]: m for m in listing["models"]}
    assert set(by_name) == {"ade", "street"}
    assert all(m["state"] == "ready" and m["version"] == 1 and m["error"] is None for m in by_name.values())
    assert by_name["ade"]["default"] and not by_name["street"]["default"]
    assert len(by_name["ade"]["source_sha256"]) == 64
    ade = httpx.get(f"{two.url}/v1/models/ade", timeout=30).json()
    street = httpx.get(f"{two.url}/v1/models/street", timeout=30).json()
    assert (ade["num_labels"], street["num_labels"]) == (150, 19)
    assert httpx.get(f"{two.url}/v1/model", timeout=30).json()["name"] == "ade"
    assert "source" not in ade  # no server paths in the description, only the hash
    assert httpx.get(f"{two.url}/v1/models/street/ready", timeout=30).status_code == 200


def test_each_model_answers_with_its_own_classes_over_rest(two: Served, real_photos: list[Path]) -> None:
    photo = real_photos[0]
    default, ade, street = (_segment(two, photo, m) for m in (None, "ade", "street"))
    assert default["classes"] == ade["classes"] and ade["model"] == "ade" and street["model"] == "street"
    assert {c["label"] for c in ade["classes"]} & {"wall", "floor", "ceiling", "sky", "building", "tree"}
    street_labels = json.loads(httpx.get(f"{two.url}/v1/models/street", timeout=30).text)["classes"]
    assert {c["label"] for c in street["classes"]} <= {c["label"] for c in street_labels}
    assert all(c["id"] < 19 for c in street["classes"])


def test_unknown_model_is_404_json_and_not_found(two: Served, stub: pb_grpc.SegmentationServiceStub) -> None:
    answer = httpx.post(
        f"{two.url}/v1/models/nope/segment", content=b"x", headers={"Content-Type": "image/png"}, timeout=30
    )
    assert answer.status_code == 404
    assert answer.json()["error"] == "model_not_found"
    assert httpx.get(f"{two.url}/v1/models/nope", timeout=30).status_code == 404
    with pytest.raises(grpc.RpcError) as caught:
        stub.Segment(pb.SegmentRequest(image=b"x", model="nope"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetModel(pb.GetModelRequest(name="nope"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_grpc_routes_by_model(
    two: Served, stub: pb_grpc.SegmentationServiceStub, real_photos: list[Path]
) -> None:
    image = real_photos[0].read_bytes()
    street = stub.Segment(pb.SegmentRequest(image=image, model="street"), timeout=120)
    default = stub.Segment(pb.SegmentRequest(image=image), timeout=120)
    assert (street.model, default.model) == ("street", "ade")
    assert all(c.id < 19 for c in street.classes)
    rest = _segment(two, real_photos[0], "ade")
    assert [(c.id, c.pixels) for c in default.classes] == [(c["id"], c["pixels"]) for c in rest["classes"]]
    listing = stub.ListModels(pb.ListModelsRequest(), timeout=30)
    assert listing.default == "ade" and [m.name for m in listing.models] == ["ade", "street"]
    described = stub.GetModel(pb.GetModelRequest(name="street"), timeout=30)
    assert (described.name, described.num_labels, described.version) == ("street", 19, 1)
    frames = [pb.SegmentRequest(image=image, frame_id=i, model=("street", "ade")[i % 2]) for i in range(6)]
    answers = list(stub.StreamSegment(iter(frames), timeout=120))
    assert [(a.frame_id, a.model) for a in answers] == [(i, ("street", "ade")[i % 2]) for i in range(6)]


def test_health_per_model(two: Served) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{two.grpc_port}") as channel:  # type: ignore[attr-defined]
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "segformer.v1.SegmentationService", "ade", "street"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=30).status
            assert status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.RpcError) as caught:
            health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=30)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_admin_needs_the_token(two: Served) -> None:
    url = f"{two.url}/v1/models/street/load"
    assert httpx.post(url, timeout=30).status_code == 401
    wrong = httpx.post(url, headers={"Authorization": "Bearer wrong"}, timeout=30)
    assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"


def test_corrupt_reload_keeps_the_old_version(two: Served, tmp_path: Path, real_photos: list[Path]) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07 this is not an onnx graph" * 100)
    before = _segment(two, real_photos[0], "street")
    answer = httpx.post(
        f"{two.url}/v1/models/street/load", json={"source": str(corrupt)}, headers=ADMIN, timeout=120
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "load_failed"
    status = next(
        m for m in httpx.get(f"{two.url}/v1/models", timeout=30).json()["models"] if m["name"] == "street"
    )
    assert status["state"] == "ready" and status["version"] == 1 and status["error"]
    assert _segment(two, real_photos[0], "street")["classes"] == before["classes"]
    assert httpx.get(f"{two.url}/readyz", timeout=30).status_code == 200


def test_metrics_carry_the_model_label(two: Served, real_photos: list[Path]) -> None:
    _segment(two, real_photos[0], "street")
    text = two.metrics()
    assert metric_value(text, "segformer_requests_total", model="street", status="200") >= 1
    assert (
        metric_value(text, "segformer_stage_duration_seconds_count", model="street", stage="inference") >= 1
    )
    assert metric_value(text, "segformer_batch_size_count", model="street") >= 1
    assert 'segformer_queue_depth{model="ade"}' in text
    assert metric_value(text, "segformer_model_info", model="street", version="1", num_labels="19") == 1
    assert metric_value(text, "segformer_model_ready", model="ade") == 1
