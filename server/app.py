"""``Server``: settings → model repository → data plane → REST app and gRPC server, in one event loop.

``start`` brings HTTP and gRPC up first (liveness answers at once, readiness says 503) and begins
loading every model in the background; ``stop`` stops accepting, lets in-flight requests finish and
closes the models. ``run`` does both around SIGTERM/SIGINT and returns the exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import Iterator

import uvicorn

from server import tracing
from server.dataplane import DataPlane
from server.grpc.server import GrpcServer
from server.repository import ModelRepository
from server.rest import build_rest_app
from server.rest.protocol import GuardedH11Protocol
from server.runtimes.base import runtime_choice
from server.runtimes.onnxruntime import choose_providers
from server.settings import Settings

log = logging.getLogger("segformer.app")


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal capture (it would re-raise SIGTERM after a graceful exit)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Server:
    """The whole server process: one object, ``start`` / ``stop`` (``run`` = both around signals)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.repository = ModelRepository(settings)
        self.dataplane = DataPlane(settings, self.repository)
        config = uvicorn.Config(
            build_rest_app(self.dataplane, settings),
            host=settings.host,
            port=settings.port,
            loop="none",
            lifespan="off",
            http=functools.partial(GuardedH11Protocol, header_timeout_s=settings.header_timeout_s),
            h11_max_incomplete_event_size=settings.max_header_bytes,
            timeout_keep_alive=settings.keep_alive_timeout_s,
            log_level=settings.log_level,
            # JSON: uvicorn's lines go through the root handler too (server/logs.py), not its own format
            log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
            access_log=False,  # the access line is ours (segformer.access), one per request
            timeout_graceful_shutdown=int(settings.graceful_timeout_s),
        )
        self.rest = _Uvicorn(config)
        self.grpc: GrpcServer | None = None
        self.failed = False  # no model could be loaded at start-up
        self._rest_task: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._stopping = False
        self._drain: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        """Set up tracing (off unless asked: ``server/tracing.py``), listen (gRPC, then REST) and begin
        loading the models; returns once REST is up."""
        tracing.configure(self.settings)
        if self.settings.grpc_port:
            self.grpc = GrpcServer(self.dataplane, self.settings)
            await self.grpc.start()
            log.info("gRPC listening on %s:%d", self.settings.host, self.settings.grpc_port)
        await self.repository.start()
        self._watch = asyncio.create_task(self._watch_first_loads(), name="first-loads")
        self._rest_task = asyncio.create_task(self.rest.serve(), name="rest")
        self._rest_task.add_done_callback(lambda _: self.request_stop("REST server ended"))
        while not self.rest.started and not self._rest_task.done():
            await asyncio.sleep(0.01)

    async def _watch_first_loads(self) -> None:
        """Stop with exit status 1 when every model failed its first load (there is nothing to serve)."""
        while any(s.state == "loading" for s in self.repository.statuses()):
            await asyncio.sleep(0.05)
        if self.repository.statuses() and all(s.state == "failed" for s in self.repository.statuses()):
            self.failed = True
            self.request_stop("no model could be loaded")

    def request_stop(self, reason: str, drain: bool = False) -> None:
        """Begin stopping: readiness fails at once (``/readyz`` 503 ``shutting_down``, gRPC health
        NOT_SERVING); with ``drain`` (SIGTERM, SIGINT) the listeners stay open and serve for
        ``--drain-delay-s`` first, so that load balancers see the 503 and take this server out before
        connections are refused. Then listeners close and in-flight work finishes. A second signal
        during the delay closes at once."""
        delay = self.settings.drain_delay_s if drain else 0.0
        if self._stopping:
            if drain and self._drain is not None:  # a second signal while draining: stop waiting
                self._drain.cancel()
                self._close_listeners()
            return
        self._stopping = True
        self.dataplane.draining = True
        self.repository.stop_loading()  # a reload in progress (an export, say) is cancelled, not waited for
        if delay > 0:
            log.info("%s: draining, readiness 503, closing listeners in %g s", reason, delay)
            self._drain = asyncio.get_running_loop().call_later(delay, self._close_listeners)
        else:
            log.info("%s: stopping (finishing in-flight requests)", reason)
            self._close_listeners()

    def _close_listeners(self) -> None:
        self._drain = None
        self.dataplane.closing = True
        self.rest.should_exit = True
        self._stopped.set()

    async def stop(self) -> None:
        """Stop everything gracefully (``request_stop`` first if nobody has)."""
        self.request_stop("stop")
        await self._stopped.wait()  # the drain delay, if one is running
        grace = self.settings.graceful_timeout_s
        stopping = [self.grpc.stop(grace)] if self.grpc is not None else []
        await asyncio.gather(*stopping, return_exceptions=True)
        if self._rest_task is not None:
            await asyncio.gather(self._rest_task, return_exceptions=True)
        if self._watch is not None:
            self._watch.cancel()
        await self.repository.close()
        tracing.shutdown()  # flushes the spans still buffered

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; 0 after a graceful stop, 1 when no model could be loaded or REST
        could not listen, 2 for a device or runtime that is not available (checked before anything
        listens)."""
        try:
            if runtime_choice(self.settings).runtime == "onnxruntime":
                log.info("execution providers: %s", choose_providers(self.settings))
        except (RuntimeError, ValueError) as exc:
            log.error("%s", exc)
            return 2
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, signal.Signals(sig).name, True)
        try:
            await self.start()
            await self._stopped.wait()
        except (RuntimeError, ValueError) as exc:  # a port that cannot be bound, a bad OTLP protocol
            log.error("%s", exc)
            self.failed = True
        finally:
            await self.stop()
        return 1 if self.failed or not self.rest.started else 0


async def serve(settings: Settings) -> int:
    """``segformer-serve``: build the server and run it (see ``Server.run``)."""
    try:
        server = Server(settings)
    except (ValueError, OSError) as exc:  # bad model arguments, a missing or empty repository
        log.error("%s", exc)
        return 2
    return await server.run()
