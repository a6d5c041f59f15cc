"""The client tests use the gRPC tests' live server (one per session, see tests/grpc/serving.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.grpc.serving import (
    GraphReference,
    LiveServer,
    shared_server,
    stop_after_last_user,
    stop_shared_server,
)


@pytest.fixture(scope="session")
def live(random_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    try:
        yield shared_server(random_b0_onnx, tmp_path_factory.getbasetemp())
    finally:
        stop_shared_server()


@pytest.fixture(scope="session")
def reference(random_b0_onnx: Path) -> GraphReference:
    return GraphReference(random_b0_onnx)


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    stop_after_last_user(item)
