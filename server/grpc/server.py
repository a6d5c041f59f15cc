"""``GrpcServer``: the segmentation service, standard health checking and reflection on one port.

``server/app.py`` builds it inside the running event loop, next to the REST app, with the same data
plane; ``start()`` binds and follows readiness, ``stop(grace)`` says NOT_SERVING first, then drains.
Health (``grpc.health.v1``) answers for the server (``""`` and the service name: every model ready)
and for each model by its name (that model serves); unknown names are NOT_FOUND (``Check``) or
SERVICE_UNKNOWN (``Watch``, which may later see the model appear).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from server.dataplane import DataPlane
from server.errors import shown
from server.grpc.descriptors import merged_pool
from server.grpc.gen import grpc_service_pb2, grpc_service_pb2_grpc
from server.grpc.gen import segmentation_pb2 as pb
from server.grpc.gen import segmentation_pb2_grpc as pb_grpc
from server.grpc.inference import InferenceServicer
from server.grpc.interceptor import Bookkeeping
from server.grpc.servicer import SegmentationServicer
from server.settings import Settings

log = logging.getLogger("segformer.grpc")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SegmentationService"].full_name
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
HEALTH_POLL_S = 0.05
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
INFERENCE_SERVICE_NAME = grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
SERVER_SERVICES = ("", SERVICE_NAME)


class ReadinessHealth(health_pb2_grpc.HealthServicer):
    """``grpc.health.v1.Health`` following the data plane's readiness, per model and for the server.

    Unlike the reference servicer, a ``Watch`` ends after it has sent the final NOT_SERVING of a shutdown,
    so ``server.stop(grace)`` does not wait out its grace period for health watchers.
    """

    def __init__(self, dataplane: DataPlane) -> None:
        self._dataplane = dataplane
        self._statuses: dict[str, int] = dict.fromkeys(SERVER_SERVICES, NOT_SERVING)
        self._version = 0
        self._final = False
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def _status(self, service: str) -> int | None:
        return self._statuses.get(service)

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: Any
    ) -> health_pb2.HealthCheckResponse:
        status = self._status(request.service)
        if status is None:
            unknown = f"unknown service or model {shown(request.service)}"
            await context.abort(grpc.StatusCode.NOT_FOUND, unknown)
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        last = None
        while True:
            async with self._changed:
                seen, final = self._version, self._final
                status = self._status(request.service)
            status = UNKNOWN if status is None else status
            if status != last:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last = status
            if final:
                return
            async with self._changed:
                await self._changed.wait_for(lambda seen=seen: self._version != seen)

    async def _set(self, statuses: dict[str, int], final: bool = False) -> None:
        async with self._changed:
            if self._final:
                return
            self._statuses, self._final = statuses, final
            self._version += 1
            self._changed.notify_all()

    def _current(self) -> dict[str, int]:
        plane = self._dataplane
        server = SERVING if plane.is_ready() else NOT_SERVING
        statuses = dict.fromkeys(SERVER_SERVICES, server)
        for name in plane.repository.names():
            statuses[name] = SERVING if plane.is_ready(name) else NOT_SERVING
        return statuses

    async def _follow(self) -> None:
        while True:
            current = self._current()
            if current != self._statuses:
                if current[""] != self._statuses.get(""):
                    log.info("grpc health: %s", "SERVING" if current[""] == SERVING else "NOT_SERVING")
                await self._set(current)
            await asyncio.sleep(HEALTH_POLL_S)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow(), name="grpc-health")

    async def shutdown(self) -> None:
        """NOT_SERVING for good, for every service (watchers get it and end); stop following readiness."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._set(dict.fromkeys(self._statuses, NOT_SERVING), final=True)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class GrpcServer:
    """One ``grpc.aio.Server`` on ``settings.host:settings.grpc_port`` with our services on it."""

    def __init__(self, dataplane: DataPlane, settings: Settings) -> None:
        limit = settings.grpc_max_message_bytes
        options = [
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0),  # a port already taken fails loudly instead of being shared
        ]
        bookkeeping = Bookkeeping(dataplane.repository)  # metrics, status table, tracing, access log
        self.server = grpc.aio.server(options=options, interceptors=[bookkeeping])
        pb_grpc.add_SegmentationServiceServicer_to_server(
            SegmentationServicer(dataplane, settings, bookkeeping), self.server
        )
        self.health = ReadinessHealth(dataplane)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        inference = InferenceServicer(dataplane, settings, bookkeeping)  # the Open Inference Protocol
        grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(inference, self.server)
        names = (SERVICE_NAME, INFERENCE_SERVICE_NAME, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME)
        files = (pb.DESCRIPTOR, grpc_service_pb2.DESCRIPTOR, health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR)
        reflection.enable_server_reflection(names, self.server, pool=merged_pool(*files))
        address = _address(settings.host, settings.grpc_port)
        self.port = self.server.add_insecure_port(address)
        if not self.port:
            raise RuntimeError(f"gRPC: cannot bind {address}")
        log.info("grpc: %s on %s (max message %d bytes)", SERVICE_NAME, address, limit)

    async def start(self) -> None:
        await self.server.start()
        self.health.start()

    async def stop(self, grace: float | None) -> None:
        """NOT_SERVING first (load balancers stop sending), then let in-flight calls finish."""
        await self.health.shutdown()
        await self.server.stop(grace)
