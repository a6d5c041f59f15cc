"""The video tests share the client tests' live server (tests/client/conftest.py)."""

from __future__ import annotations

from tests.grpc.conftest import live, pytest_runtest_teardown, reference

__all__ = ["live", "pytest_runtest_teardown", "reference"]
