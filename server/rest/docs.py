"""``/docs``: Swagger UI over ``/openapi.json`` with its assets served from the ``swagger-ui-bundle``
package, so the page works offline (FastAPI's own page loads them from a CDN). ReDoc has no such
package, so there is no ``/redoc``. ``--no-docs`` leaves these routes out.
"""

from __future__ import annotations

from functools import cache

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from swagger_ui_bundle import swagger_ui_path

from server.errors import ServeError

router = APIRouter(include_in_schema=False)
#: The assets the page loads, and their media types (no request path reaches the file system).
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}


@cache
def asset(name: str) -> bytes:
    return (swagger_ui_path / name).read_bytes()


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    """Relative asset URLs, so the page also works under a proxy's path prefix."""
    return get_swagger_ui_html(
        openapi_url="openapi.json",
        title="segformer-serve API",
        swagger_js_url="docs/assets/swagger-ui-bundle.js",
        swagger_css_url="docs/assets/swagger-ui.css",
        swagger_favicon_url="docs/assets/favicon-32x32.png",
    )


@router.get("/docs/assets/{name}")
async def swagger_asset(name: str) -> Response:
    if name not in ASSETS:
        raise ServeError(404, "not_found", f"no docs asset {name!r}")
    return Response(asset(name), media_type=ASSETS[name], headers={"Cache-Control": "max-age=86400"})
