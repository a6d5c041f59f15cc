"""Standard health checking (follows warm-up and shutdown), reflection, overload."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from server.grpc.gen import segmentation_pb2 as pb
from server.grpc.gen import segmentation_pb2_grpc as pb_grpc
from tests.grpc.serving import LiveServer, scene_png

SERVICE = "segformer.v1.SegmentationService"


def test_health_not_serving_before_warm_up_then_serving(live: LiveServer, channel: grpc.Channel) -> None:
    # recorded by a Watch opened when the server process was spawned (it warms up 3 runs)
    assert live.health_history[0] == "NOT_SERVING"
    assert live.health_history[-1] == "SERVING"
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as caught:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_the_service(channel: grpc.Channel) -> None:
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services
    proto = database.FindFileContainingSymbol(SERVICE)
    assert proto.name == "segformer/v1/segmentation.proto" and proto.package == "segformer.v1"
    methods = {m.name: (m.client_streaming, m.server_streaming) for m in proto.service[0].method}
    assert methods == {
        "Segment": (False, False),
        "StreamSegment": (True, True),
        "GetModel": (False, False),
        "ListModels": (False, False),
    }


def test_overload_is_resource_exhausted(live: LiveServer) -> None:
    """More concurrent calls than the queue holds (24): the excess gets RESOURCE_EXHAUSTED + retry-after."""
    frame = scene_png(256, 256, seed=11)

    async def flood() -> list[grpc.aio.AioRpcError | pb.SegmentResponse]:
        async with grpc.aio.insecure_channel(live.grpc_address) as channel:
            stub = pb_grpc.SegmentationServiceStub(channel)
            request = pb.SegmentRequest(image=frame, mode=pb.INFERENCE_MODE_NATIVE)
            calls = [stub.Segment(request, timeout=120) for _ in range(100)]
            return await asyncio.gather(*calls, return_exceptions=True)

    outcomes = asyncio.run(flood())
    refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert refused and len(refused) < len(outcomes)
    assert {e.code() for e in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    trailers = dict(refused[0].trailing_metadata())
    assert trailers["segformer-error"] == "queue_full" and int(trailers["retry-after"]) >= 1
    with grpc.insecure_channel(live.grpc_address) as channel:  # and it recovers
        assert (
            pb_grpc.SegmentationServiceStub(channel)
            .Segment(pb.SegmentRequest(image=frame), timeout=60)
            .mask.width
        )


def test_unavailable_until_warm_and_not_serving_on_shutdown(random_b0_onnx: Path, tmp_path: Path) -> None:
    server = LiveServer(random_b0_onnx, tmp_path, "--warmup-runs", "12", "--log-level", "warning")
    try:
        deadline = time.monotonic() + 60
        while not server.health_history and time.monotonic() < deadline:  # gRPC is up, the model warming
            time.sleep(0.02)
        assert server.health_history == ["NOT_SERVING"]
        with grpc.insecure_channel(server.grpc_address) as channel:
            stub = pb_grpc.SegmentationServiceStub(channel)
            for call in (
                lambda: stub.Segment(pb.SegmentRequest(image=scene_png(32, 32, 1)), timeout=10),
                lambda: stub.GetModel(pb.GetModelRequest(), timeout=10),
            ):
                with pytest.raises(grpc.RpcError) as caught:
                    call()
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
                assert ("segformer-error", "not_ready") in caught.value.trailing_metadata()
        server.wait_ready()
        start = time.monotonic()
        assert server.terminate() == 0
        assert time.monotonic() - start < 20  # the open health Watch does not hold shutdown for its grace
        deadline = time.monotonic() + 5
        while server.health_history[-1:] != ["NOT_SERVING"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.health_history == ["NOT_SERVING", "SERVING", "NOT_SERVING"]
    finally:
        server.stop()
