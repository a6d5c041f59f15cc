"""``ModelRepository``: model names → the ``ModelRuntime`` serving each; load, reload, unload, rescan.

Every model has one entry. A load (first or reload) builds a new ``ModelRuntime`` off the event loop and
warms it up **beside** the serving one; only then is it switched in (one assignment: requests that
arrive after it get the new version, those already holding a lease on the old one finish there) and the
old one is drained and closed in the background. A load that fails leaves the serving version in place
and records the error in the model's status (in words, without paths: ``server.failures``). Loads of
different models run concurrently; ``stop_loading`` (SIGTERM) cancels those in progress.

The server is ready when it can serve what it served: its start-up loads have finished and a model
serves. A model that failed (a corrupt file in the repository, a failed load of a new name) shows as
``failed`` in its status and its own readiness, but does not take the server out of a load balancer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from server import errors, failures
from server.metrics import MODEL_LOADS, MODEL_READY
from server.runtime import ModelRuntime, graph_name, resolve
from server.schemas import ModelStatus, State
from server.settings import Settings
from server.source import NAME_PATTERN, check_name, default_name, parse_model_arg, scan_repository

log = logging.getLogger("segformer.repository")


@dataclass(eq=False)
class _Entry:
    name: str
    source: str
    from_repository: bool = False
    initial: bool = False  # configured at start-up: readiness waits for its first load
    named: bool = True  # False: a bare --model SOURCE, renamed after its graph's name on its first load
    state: State = "loading"
    current: ModelRuntime | None = None
    error: str | None = None
    task: asyncio.Task[None] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    signature: tuple[tuple[str, int, int], ...] = ()  # repository change detection


def _signature(source: str) -> tuple[tuple[str, int, int], ...]:
    """(file, size, mtime) of a source file or folder: what a rescan compares."""
    path = Path(source)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    out = []
    for file in files:
        with contextlib.suppress(OSError):
            stat = file.stat()
            out.append((str(file), stat.st_size, stat.st_mtime_ns))
    return tuple(out)


def _serves(entry: _Entry) -> bool:
    return entry.current is not None and entry.state == "ready"


def _cancelling() -> bool:
    """Whether the running task itself is being cancelled (not only something it awaits)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _consume(task: asyncio.Task[None]) -> None:
    """A load's failure is logged and kept in the model's status; nobody else may await it."""
    if not task.cancelled():
        task.exception()


class ModelRepository:
    """The models of one server (built from ``--model`` and ``--model-repository``; see module doc)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._entries: dict[str, _Entry] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None
        self._closed = False
        for arg in settings.model_sources():
            name, source = parse_model_arg(arg)
            self._add(check_name(name), source).named = source != arg
        if settings.model_repository is not None:
            for name, source in scan_repository(settings.model_repository).items():
                if name not in self._entries:
                    self._add(name, source, from_repository=True)
        if not self._entries:
            raise ValueError(f"no models: {settings.model_repository} holds none and no --model is given")
        for entry in self._entries.values():
            entry.initial = True
        self.stopping = False  # set by ``stop_loading``: no load begins after it
        self.default = next(iter(self._entries))

    def _add(self, name: str, source: str, from_repository: bool = False) -> _Entry:
        if name in self._entries:
            raise ValueError(f"model name {name!r} is given twice")
        entry = _Entry(name, source, from_repository)
        if from_repository:
            entry.signature = _signature(source)
        self._entries[name] = entry
        MODEL_READY.labels(name).set(0)
        return entry

    # --- lookups -------------------------------------------------------------------------------------

    def _entry(self, name: str | None) -> _Entry:
        entry = self._entries.get(name or self.default)
        if entry is None:
            raise errors.model_not_found(name or self.default)
        return entry

    def get(self, name: str | None = None) -> ModelRuntime:
        """The serving version of ``name`` (None or "": the default model); 404 unknown, 503 not loaded."""
        entry = self._entry(name)
        if entry.current is None or entry.state == "unloading":
            raise errors.model_not_ready(entry.name, entry.state, entry.error)
        return entry.current

    def names(self) -> list[str]:
        return list(self._entries)

    def status(self, name: str | None = None) -> ModelStatus:
        entry = self._entry(name)
        current = entry.current
        return ModelStatus(
            name=entry.name,
            state=entry.state,
            default=entry.name == self.default,
            version=current.version if current else 0,
            source_sha256=current.source_sha256 if current else "",
            error=entry.error,
            reloading=entry.task is not None and current is not None,
        )

    def statuses(self) -> list[ModelStatus]:
        return [self.status(name) for name in self._entries]

    def is_ready(self, name: str | None = None) -> bool:
        """``name`` serves; None: the server's readiness (see the module doc)."""
        if name is not None:
            entry = self._entries.get(name)
            return entry is not None and _serves(entry)
        return any(_serves(e) for e in self._entries.values()) and not self.starting()

    def starting(self) -> list[str]:
        """The models configured at start-up whose first load has not finished."""
        return [
            e.name for e in self._entries.values() if e.initial and e.current is None and e.state == "loading"
        ]

    # --- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin loading every configured model (returns at once) and the repository poller."""
        for entry in self._entries.values():
            self._begin_load(entry, entry.source)
        if self.settings.model_repository is not None and self.settings.repository_poll_s > 0:
            self._poller = asyncio.create_task(self._poll(), name="repository-poll")

    def _begin_load(self, entry: _Entry, source: str) -> asyncio.Task[None]:
        if self.stopping:
            raise errors.shutting_down()
        if entry.task is not None:
            raise errors.conflict(f"model {entry.name!r} is already being loaded")
        entry.cancel = threading.Event()
        entry.task = asyncio.create_task(self._load(entry, source), name=f"load-{entry.name}")
        entry.task.add_done_callback(_consume)
        return entry.task

    async def _load(self, entry: _Entry, source: str) -> None:
        version = (entry.current.version if entry.current else 0) + 1
        log.info("%s: loading version %d from %s", entry.name, version, source)
        try:
            path = await resolve(source, self.settings, entry.cancel)
            if not entry.named and entry.current is None:
                self._rename(entry, await asyncio.to_thread(graph_name, path))
            runtime = await ModelRuntime.open(entry.name, source, path, version, self.settings)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            entry.error = failures.reason(exc)
            if entry.current is None:
                entry.state = "failed"
            MODEL_LOADS.labels(entry.name, "failed").inc()
            expected = isinstance(exc, RuntimeError | OSError | ValueError)
            log.error("%s: load failed: %s", entry.name, exc, exc_info=None if expected else exc)
            log.debug("%s: load traceback", entry.name, exc_info=exc)
            raise
        finally:
            entry.task = None
        if self._closed or self._entries.get(entry.name) is not entry or entry.state == "unloading":
            self._retire(runtime)  # unloaded or shut down meanwhile
            return
        old, entry.current = entry.current, runtime  # the switch: one assignment
        entry.source, entry.state, entry.error = source, "ready", None
        runtime.publish()
        MODEL_READY.labels(entry.name).set(1)
        MODEL_LOADS.labels(entry.name, "ok").inc()
        log.info("%s: version %d serving", entry.name, version)
        if old is not None:
            self._retire(old)

    def _rename(self, entry: _Entry, graph: str) -> None:
        """A bare ``--model SOURCE`` is served under its graph's name (as before several models), made a
        valid name (``/`` and other characters become ``-``) unless that name is taken."""
        entry.named = True
        name = default_name(graph.replace("/", "-")) if graph else ""
        if not name or name == entry.name or name in self._entries or not NAME_PATTERN.match(name):
            return
        self._entries = {(name if k == entry.name else k): v for k, v in self._entries.items()}
        if self.default == entry.name:
            self.default = name
        MODEL_READY.remove(entry.name)
        MODEL_READY.labels(name).set(0)
        log.info("%s: served as %r (the graph's name)", entry.name, name)
        entry.name = name

    def _retire(self, runtime: ModelRuntime) -> None:
        task = asyncio.create_task(runtime.drain(self.settings.graceful_timeout_s))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def load(self, name: str, source: str | None = None, wait: bool = True) -> ModelStatus:
        """Load a new model, or reload ``name`` (from ``source``, else its current source).
        400: an invalid name, no source for a new one, or a failed load; 503: the server is stopping."""
        if self.stopping:
            raise errors.shutting_down()
        if name not in self._entries and not NAME_PATTERN.match(name):
            raise errors.invalid_argument(
                f"invalid model name {errors.shown(name)}: "
                "use letters, digits, '.', '_' and '-' (at most 128)"
            )
        if name not in self._entries and not source:
            raise errors.invalid_argument(f"model {errors.shown(name)} is new: give its source")
        entry = self._entries.get(name) or self._add(name, source or "")
        task = self._begin_load(entry, source or entry.source)
        if wait:
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.cancelled() and not _cancelling():  # the load was cancelled, not this request
                    raise errors.ServeError(
                        503,
                        "shutting_down",
                        f"the load of {errors.shown(name)} was cancelled: the server is stopping",
                    ) from None
                raise
            except Exception as exc:
                raise errors.load_failed(name, failures.reason(exc)) from None
        return self.status(name)

    async def unload(self, name: str) -> ModelStatus:
        """Stop serving ``name``: new requests get 404 at once, in-flight ones finish, then it is closed."""
        entry = self._entry(name)
        entry.state = "unloading"
        status = self.status(name)
        if entry.task is not None:
            entry.cancel.set()
            entry.task.cancel()
        del self._entries[entry.name]
        MODEL_READY.remove(entry.name)
        if entry.current is not None:
            await entry.current.drain(self.settings.graceful_timeout_s)
        log.info("%s: unloaded", entry.name)
        return status

    async def rescan(self) -> dict[str, list[str]]:
        """Sync with ``--model-repository``: load new models, reload changed ones, unload removed ones."""
        folder = self.settings.model_repository
        if folder is None:
            raise errors.invalid_argument("no --model-repository is configured")
        found = await asyncio.to_thread(scan_repository, folder)
        changes: dict[str, list[str]] = {"added": [], "reloaded": [], "removed": []}
        for name, entry in list(self._entries.items()):
            if entry.from_repository and name not in found:
                await self.unload(name)
                changes["removed"].append(name)
        for name, source in found.items():
            entry = self._entries.get(name)
            signature = await asyncio.to_thread(_signature, source)
            if entry is None:
                self._add(name, source, from_repository=True)
                self._begin_load(self._entries[name], source)
                changes["added"].append(name)
            elif entry.from_repository and signature != entry.signature and entry.task is None:
                entry.signature = signature
                self._begin_load(entry, source)
                changes["reloaded"].append(name)
        return changes

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.repository_poll_s)
            try:
                changes = await self.rescan()
            except Exception as exc:  # the repository may be briefly unreadable
                log.warning("repository rescan failed: %s", exc)
                continue
            if any(changes.values()):
                log.info("repository rescan: %s", changes)

    def stop_loading(self) -> list[asyncio.Task[None]]:
        """Begin no more loads and cancel those in progress (an export subprocess is terminated): the
        drain of a SIGTERM must not wait for them. The cancelled loads (await them to be sure they ended)."""
        self.stopping = True
        if self._poller is not None:
            self._poller.cancel()
        loads = [e.task for e in self._entries.values() if e.task is not None]
        for entry in self._entries.values():
            entry.cancel.set()
        for task in loads:
            task.cancel()
        return loads

    async def close(self) -> None:
        """Cancel loads, let every serving version finish its requests, close everything."""
        self._closed = True
        await asyncio.gather(*self.stop_loading(), return_exceptions=True)
        timeout = self.settings.graceful_timeout_s
        current = [e.current.drain(timeout) for e in self._entries.values() if e.current is not None]
        await asyncio.gather(*current, *self._retiring, return_exceptions=True)
