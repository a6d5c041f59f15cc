"""The browser demo: ``/`` redirects to ``/demo/``, a static page (``static/demo/``) over the public API.

The page is plain HTML, CSS and ES modules shipped in the package: no build step, nothing fetched from
elsewhere (the Content-Security-Policy header allows this origin only). Only a fixed set of file names is
served, so no request path reaches the file system. ``--no-demo`` leaves these routes out.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from server.errors import ServeError

router = APIRouter(include_in_schema=False)

#: The page's files and their media types.
FILES = {
    "index.html": "text/html; charset=utf-8",
    "demo.css": "text/css; charset=utf-8",
    "demo.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "camera.js": "text/javascript; charset=utf-8",
    "mask.js": "text/javascript; charset=utf-8",
    "orient.js": "text/javascript; charset=utf-8",
}
#: Same origin only; images from data:/blob: URLs (the mask PNG, decoded frames), the camera stream.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'self'; form-action 'none'"
)


@cache
def static_file(name: str) -> bytes:
    """The bytes of one of the page's files (read from the package once)."""
    return resources.files("server.rest").joinpath("static", "demo", name).read_bytes()


def _file_response(name: str) -> Response:
    headers = {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }
    return Response(static_file(name), media_type=FILES[name], headers=headers)


@router.api_route("/", methods=["GET", "HEAD"])
async def root() -> RedirectResponse:
    """The demo page (a relative redirect, so it also works under a proxy's path prefix)."""
    return RedirectResponse("demo/", status_code=307)


@router.api_route("/demo", methods=["GET", "HEAD"])
async def demo_no_slash() -> RedirectResponse:
    return RedirectResponse("demo/", status_code=307)


@router.api_route("/demo/", methods=["GET", "HEAD"])
async def demo_page() -> Response:
    return _file_response("index.html")


@router.api_route("/demo/{name}", methods=["GET", "HEAD"])
async def demo_file(name: str) -> Response:
    if name not in FILES:
        raise ServeError(404, "not_found", f"no demo file {name!r}")
    return _file_response(name)
