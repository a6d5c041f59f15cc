"""Which model and version a v2 request names, through the data plane's model API.

A v2 model version is the model's ``version`` in the repository (1 for the first load, +1 per reload; a
string on the wire); an empty version means the served one, any other is a 404 like an unknown model.
"""

from __future__ import annotations

from typing import Any

from server.errors import ServeError, shown


def version_not_found(name: str, version: str, served: int) -> ServeError:
    return ServeError(
        404,
        "model_version_not_found",
        f"model {shown(name)} has no version {shown(version)} (serving: {served})",
    )


def resolve(plane: Any, name: str, version: str = "") -> tuple[str, int]:
    """The model's name (empty: the default model) and serving version; 404 when either is unknown."""
    status = plane.status(name or None)  # 404 for an unknown model
    if version and version != str(status.version):
        raise version_not_found(status.name, version, status.version)
    return status.name, status.version


def is_ready(plane: Any, name: str, version: str = "") -> bool:
    name, _ = resolve(plane, name, version)
    return bool(plane.is_ready(name))
