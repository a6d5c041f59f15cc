"""Metric series stay bounded (issue #30): a name a caller sends becomes a ``model`` label only when the
repository serves that model (``server.metrics.model_label``). 3,000 calls naming random unknown models,
over every transport and method that takes a model name, leave the number of series unchanged (+-0)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from server.grpc.gen import grpc_service_pb2 as v2
from server.grpc.gen import grpc_service_pb2_grpc as v2_grpc
from server.grpc.gen import segmentation_pb2 as v1
from server.grpc.gen import segmentation_pb2_grpc as v1_grpc
from server.metrics import UNROUTED, model_label
from tests.grpc.serving import LiveServer, scene_png

CALLS = 3000
STREAM_FRAMES = 50  # a stream carries this many unknown names
IMAGE = scene_png(16, 16, seed=0)


def series(text: str) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


@pytest.fixture(scope="module")
def live(random_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(random_b0_onnx, tmp_path_factory.mktemp("series"), "--log-level", "error")
    try:
        yield server.wait_ready()
    finally:
        assert server.stop() == 0, server.log_tail()


def test_model_label_keeps_served_names_only() -> None:
    assert model_label("a", {"a", "b"}) == "a"
    assert model_label("zzz", {"a", "b"}) == UNROUTED
    assert model_label("", ["a"]) == UNROUTED


def _callers(live: LiveServer, client: httpx.Client, channel: grpc.Channel) -> list[Callable[[str], object]]:
    """One call per method that takes a model name; each gets a fresh name."""
    one, two = v1_grpc.SegmentationServiceStub(channel), v2_grpc.GRPCInferenceServiceStub(channel)

    def grpc_call(call: Callable[[], object]) -> object:
        try:
            return call()
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND, err  # type: ignore[attr-defined]
            return err

    def v1_stream(name: str) -> object:
        frames = (
            v1.SegmentRequest(image=IMAGE, model=f"{name}-{i}", frame_id=i) for i in range(STREAM_FRAMES)
        )
        return [r.status.code for r in one.StreamSegment(frames, timeout=60)]

    def v2_stream(name: str) -> object:
        requests = (v2.ModelInferRequest(model_name=f"{name}-{i}") for i in range(STREAM_FRAMES))
        return [r.error_message for r in two.ModelStreamInfer(requests, timeout=60)]

    infer = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["AA=="]}]}
    return [
        lambda n: client.post(
            f"/v1/models/{n}/segment", content=IMAGE, headers={"Content-Type": "image/png"}
        ),
        lambda n: client.get(f"/v1/models/{n}"),
        lambda n: client.get(f"/v1/models/{n}/ready"),
        lambda n: client.get(f"/v2/models/{n}/ready"),
        lambda n: client.get(f"/v2/models/{n}"),
        lambda n: client.post(f"/v2/models/{n}/infer", json=infer),
        lambda n: grpc_call(lambda: one.Segment(v1.SegmentRequest(image=IMAGE, model=n), timeout=10)),
        lambda n: grpc_call(lambda: one.GetModel(v1.GetModelRequest(name=n), timeout=10)),
        lambda n: grpc_call(lambda: two.ModelReady(v2.ModelReadyRequest(name=n), timeout=10)),
        lambda n: grpc_call(lambda: two.ModelMetadata(v2.ModelMetadataRequest(name=n), timeout=10)),
        lambda n: grpc_call(lambda: two.ModelConfig(v2.ModelConfigRequest(name=n), timeout=10)),
        lambda n: grpc_call(lambda: two.ModelInfer(v2.ModelInferRequest(model_name=n), timeout=10)),
        v1_stream,
        v2_stream,
    ]


def test_unknown_model_names_add_no_series(live: LiveServer) -> None:
    with (
        httpx.Client(base_url=live.rest_url, timeout=30) as client,
        grpc.insecure_channel(live.grpc_address) as channel,
    ):
        callers = _callers(live, client, channel)
        for call in callers:  # every method's series for the bucket exist from here on
            call(f"warm-{uuid.uuid4().hex}")
        live.metrics()
        before = live.metrics()
        calls = 0
        for call in itertools.cycle(callers):
            call(uuid.uuid4().hex)
            calls += STREAM_FRAMES if call.__name__.endswith("_stream") else 1
            if calls >= CALLS:
                break
        after = live.metrics()
    assert series(after) == series(before), f"{series(before)} -> {series(after)} series after {calls} calls"
    assert len(after) < 2 * len(before)
