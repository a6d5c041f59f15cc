"""Admin endpoints: load, reload, unload models and rescan the repository.

Off unless a bearer token is configured (``--admin-token`` / ``--admin-token-file``): they change what
the server serves, and a Kubernetes Service exposes every route of the pod, so "on without a token"
is never the default. With a token, a request needs ``Authorization: Bearer <token>`` (401 otherwise),
checked before anything else of the request is looked at: the load body is read (at most
``MAX_LOAD_BODY`` bytes) and parsed only after it.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import ValidationError

from server import errors
from server.rest.body import BodyLimits, read_limited
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
    given = given.strip(" \t")  # HTTP's whitespace only: "SECRET\x85" is not the token
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        raise errors.unauthorized("missing or wrong admin token (Authorization: Bearer <token>)")


router = APIRouter(dependencies=[Depends(require_admin)])
MAX_LOAD_BODY = 64 * 1024
_LOAD_BODY = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": LoadBody.model_json_schema()}},
    }
}
_ADMIN_ERRORS: dict[int | str, dict[str, object]] = {
    400: ERROR_RESPONSES[400],
    401: {"model": ErrorBody, "description": "missing or wrong admin token"},
    403: {"model": ErrorBody, "description": "the admin API is off"},
    404: {"model": ErrorBody, "description": "unknown model"},
    409: {"model": ErrorBody, "description": "a load of this model is in progress"},
}


async def _load_body(request: Request) -> LoadBody:
    """The optional JSON body of a load, read after the token check (a FastAPI body parameter would be
    parsed before the dependencies, answering 400 to a caller without a token)."""
    settings = request.app.state.settings
    data = await read_limited(
        request, BodyLimits(MAX_LOAD_BODY, settings.body_timeout_s, settings.body_idle_timeout_s)
    )
    if not data.strip():
        return LoadBody()
    try:
        return LoadBody.model_validate_json(data)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise errors.invalid_argument(f'the load body is {{"source": "..."}} or empty: {detail}') from None


@router.post(
    "/v1/models/{name}/load", response_model=ModelStatus, responses=_ADMIN_ERRORS, openapi_extra=_LOAD_BODY
)
async def load(
    request: Request,
    name: ModelName,
    wait: Annotated[
        bool, Query(description="answer once loaded (default) or at once (202 semantics)")
    ] = True,
) -> ModelStatus:
    """Load a new model or reload one (new weights with ``{"source": ...}``) beside the serving version,
    then switch atomically; a failed load keeps the old version serving (its status shows the error)."""
    body = await _load_body(request)
    repository = request.app.state.dataplane.repository
    return await repository.load(name, body.source, wait=wait)


@router.post("/v1/models/{name}/unload", response_model=ModelStatus, responses=_ADMIN_ERRORS)
async def unload(request: Request, name: ModelName) -> ModelStatus:
    """Stop serving ``name``: new requests get 404 at once, requests in flight finish."""
    return await request.app.state.dataplane.repository.unload(name)


@router.post("/v1/repository/rescan", responses=_ADMIN_ERRORS)
async def rescan(request: Request) -> dict[str, list[str]]:
    """Sync with ``--model-repository``: load new models, reload changed ones, unload removed ones."""
    return await request.app.state.dataplane.repository.rescan()
