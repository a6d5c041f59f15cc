"""The v2 tests share tests/grpc's live server (REST + gRPC, random B0) when they run in one session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.grpc.serving import LiveServer, shared_server, stop_after_last_user, stop_shared_server

MODEL = "segformer-b0-random"


@pytest.fixture(scope="session")
def live(random_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    try:
        yield shared_server(random_b0_onnx, tmp_path_factory.getbasetemp())
    finally:
        stop_shared_server()


@pytest.fixture
def rest_address(live: LiveServer) -> str:
    """``host:port`` of the REST port, as tritonclient.http and perf_analyzer take it."""
    return live.rest_url.removeprefix("http://")


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    stop_after_last_user(item)
