"""``build_grpc_server``: the segmentation service, standard health checking and reflection on one port.

``server/app.py`` builds it inside the running event loop, next to the REST app, with the same data
plane, then ``await server.start()`` / ``await server.stop(grace)``. Health (``grpc.health.v1``) follows
``dataplane.ready``: NOT_SERVING until the model is loaded and warm, SERVING after, NOT_SERVING for good
once ``stop`` begins (before in-flight calls drain).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server.grpc.gen import segmentation_pb2 as pb
from server.grpc.gen import segmentation_pb2_grpc as pb_grpc
from server.grpc.servicer import SegmentationServicer
from server.settings import Settings

log = logging.getLogger("segformer.grpc")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SegmentationService"].full_name
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
HEALTH_POLL_S = 0.05
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
SERVICES = ("", SERVICE_NAME)


class ReadinessHealth(health_pb2_grpc.HealthServicer):
    """``grpc.health.v1.Health`` for ``""`` and ``segformer.v1.SegmentationService``, following readiness.

    Unlike the reference servicer, a ``Watch`` ends after it has sent the final NOT_SERVING of a shutdown,
    so ``server.stop(grace)`` does not wait out its grace period for health watchers.
    """

    def __init__(self, dataplane: Any) -> None:
        self._dataplane = dataplane
        self._status = NOT_SERVING
        self._version = 0
        self._final = False
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: Any
    ) -> health_pb2.HealthCheckResponse:
        if request.service not in SERVICES:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=self._status)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        last = None
        while True:
            async with self._changed:
                seen, final = self._version, self._final
                status = self._status if request.service in SERVICES else UNKNOWN
            if status != last:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last = status
            if final:
                return
            async with self._changed:
                await self._changed.wait_for(lambda seen=seen: self._version != seen)

    async def _set(self, status: int, final: bool = False) -> None:
        async with self._changed:
            if self._final:
                return
            self._status, self._final = status, final
            self._version += 1
            self._changed.notify_all()

    async def _follow(self) -> None:
        serving = None
        while True:
            ready = bool(self._dataplane.ready)
            if ready != serving:
                serving = ready
                log.info("grpc health: %s", "SERVING" if ready else "NOT_SERVING")
                await self._set(SERVING if ready else NOT_SERVING)
            await asyncio.sleep(HEALTH_POLL_S)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow(), name="grpc-health")

    async def shutdown(self) -> None:
        """NOT_SERVING for good (watchers get it and end), and stop following readiness."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._set(NOT_SERVING, final=True)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def build_grpc_server(dataplane: Any, settings: Settings) -> grpc.aio.Server:
    """A bound (not yet started) ``grpc.aio.Server`` on ``settings.host:settings.grpc_port``."""
    limit = settings.grpc_max_message_bytes
    options = [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.so_reuseport", 0),  # a port already taken fails loudly instead of being shared
    ]
    server = grpc.aio.server(options=options)
    pb_grpc.add_SegmentationServiceServicer_to_server(SegmentationServicer(dataplane, settings), server)
    health = ReadinessHealth(dataplane)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection((SERVICE_NAME, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = _address(settings.host, settings.grpc_port)
    port = server.add_insecure_port(address)
    if not port:
        raise RuntimeError(f"gRPC: cannot bind {address}")
    log.info("grpc: %s on %s (max message %d bytes)", SERVICE_NAME, address, limit)
    _tie_health_to_lifecycle(server, health)
    return server


def _tie_health_to_lifecycle(server: grpc.aio.Server, health: ReadinessHealth) -> None:
    """Start following readiness with ``server.start()``; NOT_SERVING first thing in ``server.stop()``."""
    start, stop = server.start, server.stop

    async def start_with_health() -> None:
        await start()
        health.start()

    async def stop_with_health(grace: float | None) -> None:
        await health.shutdown()
        await stop(grace)

    server.start = start_with_health  # type: ignore[method-assign]
    server.stop = stop_with_health  # type: ignore[method-assign]
