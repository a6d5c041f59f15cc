"""One real server (REST + gRPC, ``python -m server``) for the gRPC tests, on the exported random B0.

The same server (``shared_server``) serves tests/client when both run in one session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from server.grpc.gen import segmentation_pb2_grpc as pb_grpc
from tests.grpc.serving import (
    GraphReference,
    LiveServer,
    shared_server,
    stop_after_last_user,
    stop_shared_server,
)

MiB = 1024 * 1024


@pytest.fixture(scope="session")
def live(random_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    try:
        yield shared_server(random_b0_onnx, tmp_path_factory.getbasetemp())
    finally:
        stop_shared_server()


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


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    stop_after_last_user(item)
