"""Wiring: settings → data plane → REST app (+ gRPC server) in one event loop, model loaded behind it.

HTTP and gRPC come up first (liveness answers at once, readiness says 503); the model is resolved,
loaded and warmed in the background. SIGTERM/SIGINT: stop accepting, finish in-flight requests, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn

from server.dataplane import DataPlane
from server.pool import SessionPool, choose_providers
from server.rest import build_rest_app
from server.settings import Settings
from server.source import resolve_model

log = logging.getLogger("segformer.app")


class _Server(uvicorn.Server):
    """uvicorn without its own signal capture (it would re-raise SIGTERM after a graceful exit)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def load_model(dataplane: DataPlane, settings: Settings, cancel: threading.Event) -> None:
    path = await asyncio.to_thread(resolve_model, settings, cancel)
    pool = await asyncio.to_thread(SessionPool, path, settings)
    await dataplane.start(pool)
    log.info("ready: %s on %s", dataplane.model_info().name, ",".join(pool.providers))


def _build_grpc(dataplane: DataPlane, settings: Settings) -> Any:
    if settings.grpc_port == 0:
        return None
    from server.grpc import build_grpc_server

    return build_grpc_server(dataplane, settings)


async def serve(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; 0 after a graceful stop, 1 when the model cannot be loaded, 2 for a
    device that is not available (checked before anything listens)."""
    try:
        log.info("execution providers: %s", choose_providers(settings))
    except RuntimeError as exc:
        log.error("%s", exc)
        return 2
    dataplane = DataPlane(settings)
    config = uvicorn.Config(
        build_rest_app(dataplane, settings),
        host=settings.host,
        port=settings.port,
        loop="none",
        lifespan="off",
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        timeout_graceful_shutdown=int(settings.graceful_timeout_s),
    )
    rest = _Server(config)
    grpc_server = _build_grpc(dataplane, settings)
    if grpc_server is not None:
        await grpc_server.start()
        log.info("gRPC listening on %s:%d", settings.host, settings.grpc_port)
    stopping: list[asyncio.Task[Any]] = []
    cancel_load = threading.Event()
    failed = False

    def stop(reason: str) -> None:
        if rest.should_exit:
            return
        log.info("%s: stopping (finishing in-flight requests)", reason)
        rest.should_exit = True
        dataplane.draining = True
        cancel_load.set()
        if grpc_server is not None:
            stopping.append(asyncio.ensure_future(grpc_server.stop(settings.graceful_timeout_s)))

    def loaded(task: asyncio.Task[None]) -> None:
        nonlocal failed
        if task.cancelled() or task.exception() is None or cancel_load.is_set():
            return  # loaded, or interrupted by a stop
        exc = task.exception()
        # our own load errors (export failed, file missing, bad graph) say it all; anything else: traceback
        expected = isinstance(exc, RuntimeError | OSError | ValueError)
        log.error("cannot serve the model: %s", exc, exc_info=None if expected else exc)
        log.debug("model load traceback", exc_info=exc)
        failed = True
        stop("model load failed")

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, signal.Signals(sig).name)
    loader = asyncio.create_task(load_model(dataplane, settings, cancel_load))
    loader.add_done_callback(loaded)
    try:
        await rest.serve()
    finally:
        stop("REST server ended")
        await asyncio.gather(*stopping, return_exceptions=True)
        if not loader.done():
            loader.cancel()
        await asyncio.gather(loader, return_exceptions=True)
        await dataplane.close()
    return 1 if failed or not rest.started else 0
