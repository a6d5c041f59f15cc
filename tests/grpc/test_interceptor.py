"""The one gRPC interceptor (``server/grpc/interceptor.py``): a fixed INTERNAL message on every method of
v1 and the Open Inference Protocol, the detail only in the log. (Its bounded metric labels are tested on
every transport in tests/server/test_metric_series.py; its tracing in tests/server/test_tracing.py.)"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from google.protobuf.message import Message

from server.errors import ServeError
from server.grpc import convert
from server.grpc.gen import grpc_service_pb2 as v2pb
from server.grpc.gen import grpc_service_pb2_grpc as v2grpc
from server.grpc.gen import segmentation_pb2 as pb
from server.grpc.gen import segmentation_pb2_grpc as pb_grpc
from server.grpc.interceptor import INTERNAL_DETAIL, Bookkeeping

SECRET = "/srv/secret/path.onnx: KeyError('lane 7')"


class _Models:
    def names(self) -> list[str]:
        return ["served"]


async def _boom() -> Message:
    raise RuntimeError(SECRET)


class BrokenSegmentation(pb_grpc.SegmentationServiceServicer):
    """Every method fails with an unexpected exception (a stream: inside each frame)."""

    def __init__(self, bookkeeping: Bookkeeping) -> None:
        self._bookkeeping = bookkeeping

    async def Segment(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        return await _boom()

    GetModel = ListModels = Segment

    async def StreamSegment(
        self, requests: AsyncIterator[pb.SegmentRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SegmentResponse]:
        async for request in requests:
            method = "/segformer.v1.SegmentationService/StreamSegment"
            try:
                yield await self._bookkeeping.frame(method, request, _boom)
            except ServeError as failure:
                yield convert.frame_error(request.frame_id, failure)


class BrokenInference(v2grpc.GRPCInferenceServiceServicer):
    async def ModelInfer(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        return await _boom()

    ServerLive = ServerReady = ModelReady = ServerMetadata = ModelMetadata = ModelConfig = ModelInfer

    async def ModelStreamInfer(
        self, requests: AsyncIterator[Message], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Message]:
        async for _ in requests:
            raise RuntimeError(SECRET)
        yield v2pb.ModelStreamInferResponse()


async def _serve_broken() -> tuple[grpc.aio.Server, int]:
    bookkeeping = Bookkeeping(_Models())
    server = grpc.aio.server(interceptors=[bookkeeping])
    pb_grpc.add_SegmentationServiceServicer_to_server(BrokenSegmentation(bookkeeping), server)
    v2grpc.add_GRPCInferenceServiceServicer_to_server(BrokenInference(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


@pytest.fixture
def broken() -> Iterator[str]:
    """A grpc.aio server with the interceptor and failing servicers, on its own event loop thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server, port = asyncio.run_coroutine_threadsafe(_serve_broken(), loop).result(30)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_an_internal_error_is_a_fixed_message_on_every_method(
    broken: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="segformer.grpc")
    with grpc.insecure_channel(broken) as channel:
        v1, v2 = pb_grpc.SegmentationServiceStub(channel), v2grpc.GRPCInferenceServiceStub(channel)
        unary = [
            functools.partial(v1.Segment, pb.SegmentRequest(model="served")),
            functools.partial(v1.GetModel, pb.GetModelRequest()),
            functools.partial(v1.ListModels, pb.ListModelsRequest()),
            *(
                functools.partial(getattr(v2, name), request)
                for name, request in [
                    ("ServerLive", v2pb.ServerLiveRequest()),
                    ("ServerReady", v2pb.ServerReadyRequest()),
                    ("ModelReady", v2pb.ModelReadyRequest(name="served")),
                    ("ServerMetadata", v2pb.ServerMetadataRequest()),
                    ("ModelMetadata", v2pb.ModelMetadataRequest(name="served")),
                    ("ModelConfig", v2pb.ModelConfigRequest(name="served")),
                    ("ModelInfer", v2pb.ModelInferRequest(model_name="served")),
                ]
            ),
            lambda **kw: list(v2.ModelStreamInfer(iter([v2pb.ModelInferRequest()]), **kw)),
        ]
        for call in unary:
            with pytest.raises(grpc.RpcError) as failed:
                call(timeout=10)
            assert failed.value.code() == grpc.StatusCode.INTERNAL
            assert failed.value.details() == INTERNAL_DETAIL
        frames = list(v1.StreamSegment(iter([pb.SegmentRequest(frame_id=i) for i in range(2)]), timeout=10))
    assert [f.frame_id for f in frames] == [0, 1]
    for frame in frames:  # the stream goes on; each frame says INTERNAL with the fixed message
        assert frame.status.code == grpc.StatusCode.INTERNAL.value[0]
        assert frame.status.message == INTERNAL_DETAIL
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert caplog.records and all(r.exc_info for r in caplog.records)
    assert len(caplog.records) == len(unary) + 2
    assert any(SECRET in str(r.exc_info[1]) for r in caplog.records if r.exc_info), logged
