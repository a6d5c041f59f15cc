"""Admin endpoints: load, reload, unload models and rescan the repository.

Off unless a bearer token is configured (``--admin-token`` / ``--admin-token-file``): they change what
the server serves, and a Kubernetes Service exposes every route of the pod, so "on without a token"
is never the default. With a token, a request needs ``Authorization: Bearer <token>`` (401 otherwise).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request

from server import errors
from server.rest.routes import ModelName
from server.rest.schemas import ERROR_RESPONSES, ErrorBody, LoadBody
from server.schemas import ModelStatus


def require_admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    """401/403 unless the admin API is on and the request carries its bearer token."""
    token: str | None = request.app.state.admin_token
    if token is None:
        raise errors.forbidden(
            "the admin API is off: start the server with --admin-token or --admin-token-file"
        )
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise errors.unauthorized("missing or wrong admin token (Authorization: Bearer <token>)")


router = APIRouter(dependencies=[Depends(require_admin)])
_ADMIN_ERRORS: dict[int | str, dict[str, object]] = {
    400: ERROR_RESPONSES[400],
    401: {"model": ErrorBody, "description": "missing or wrong admin token"},
    403: {"model": ErrorBody, "description": "the admin API is off"},
    404: {"model": ErrorBody, "description": "unknown model"},
    409: {"model": ErrorBody, "description": "a load of this model is in progress"},
}


@router.post("/v1/models/{name}/load", response_model=ModelStatus, responses=_ADMIN_ERRORS)
async def load(
    request: Request,
    name: ModelName,
    body: LoadBody | None = None,
    wait: Annotated[
        bool, Query(description="answer once loaded (default) or at once (202 semantics)")
    ] = True,
) -> ModelStatus:
    """Load a new model or reload one (new weights with ``{"source": ...}``) beside the serving version,
    then switch atomically; a failed load keeps the old version serving (its status shows the error)."""
    repository = request.app.state.dataplane.repository
    return await repository.load(name, body.source if body else None, wait=wait)


@router.post("/v1/models/{name}/unload", response_model=ModelStatus, responses=_ADMIN_ERRORS)
async def unload(request: Request, name: ModelName) -> ModelStatus:
    """Stop serving ``name``: new requests get 404 at once, requests in flight finish."""
    return await request.app.state.dataplane.repository.unload(name)


@router.post("/v1/repository/rescan", responses=_ADMIN_ERRORS)
async def rescan(request: Request) -> dict[str, list[str]]:
    """Sync with ``--model-repository``: load new models, reload changed ones, unload removed ones."""
    return await request.app.state.dataplane.repository.rescan()
