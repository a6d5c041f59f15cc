"""The client tests use the gRPC tests' live server and fixtures (one server per session, see
tests/grpc/serving.py): re-exported here, not redefined."""

from __future__ import annotations

from tests.grpc.conftest import live, pytest_runtest_teardown, reference

__all__ = ["live", "pytest_runtest_teardown", "reference"]
