"""One real server (REST + gRPC, ``python -m server``) for the gRPC tests, on the exported random B0."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from server.grpc.gen import segmentation_pb2_grpc as pb_grpc
from tests.grpc.serving import GraphReference, LiveServer

# a small batching window so concurrent traffic visibly batches; 3 warm-up runs so health is seen
# NOT_SERVING first; a queue of 24 (two streams of 8 in flight fit, a burst of 100 calls does not)
SERVER_ARGS = (
    "--warmup-runs", "3", "--max-queue-delay-ms", "10", "--max-batch-size", "8", "--max-queue-size", "24",
    "--log-level", "warning",
)  # fmt: skip
MiB = 1024 * 1024


@pytest.fixture(scope="session")
def live(random_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(random_b0_onnx, tmp_path_factory.mktemp("grpc-server"), *SERVER_ARGS)
    try:
        yield server.wait_ready()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def reference(random_b0_onnx: Path) -> GraphReference:
    return GraphReference(random_b0_onnx)


@pytest.fixture
def channel(live: LiveServer) -> Iterator[grpc.Channel]:
    options = [("grpc.max_send_message_length", 64 * MiB), ("grpc.max_receive_message_length", 64 * MiB)]
    with grpc.insecure_channel(live.grpc_address, options=options) as chan:
        yield chan


@pytest.fixture
def stub(channel: grpc.Channel) -> pb_grpc.SegmentationServiceStub:
    return pb_grpc.SegmentationServiceStub(channel)
