"""A REST request whose client hangs up while it waits is cancelled, not answered into the void.

Once the body is read, the only message the client can still send is ``http.disconnect``: a watcher
waits for it beside the work, and when it comes first the work is cancelled (which drops the request
from its batch, or discards its result if the batch already runs) and the route answers 499 (nginx's
"client closed request") for the metrics. Used by ``/v1/segment`` and the v2 ``infer`` routes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import Response

from server import metrics

CLIENT_CLOSED_REQUEST = 499
Result = TypeVar("Result")


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Coroutine[Any, Any, Result]) -> Result | None:
    """Run ``work``; if the client goes away first, cancel it and return None."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


def client_closed() -> Response:
    """The answer nobody reads, counted as a ``client_disconnected`` error."""
    metrics.observe_error("rest", "client_disconnected")
    return Response(status_code=CLIENT_CLOSED_REQUEST)
