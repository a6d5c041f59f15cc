"""Which model and version a v2 request names, through the data plane's model API.

A v2 model version is the model's ``version`` in the repository (a number, as a string on the wire);
an empty version means the served one, any other is a 404 like an unknown model.
"""

from __future__ import annotations

from typing import Any

from server.dataplane import SegmentRequest
from server.errors import ServeError


def model_not_found(name: str) -> ServeError:
    return ServeError(404, "model_not_found", f"unknown model {name!r}")


def version_not_found(name: str, version: str, served: int) -> ServeError:
    return ServeError(
        404, "model_version_not_found", f"model {name!r} has no version {version!r} (served: {served})"
    )


def versions(plane: Any) -> dict[str, int]:
    """Every configured model's name and version."""
    if not hasattr(plane, "list_models"):  # TEMPORARY until the multi-model data plane lands: one model
        return {plane.model_info().name: 1} if plane.ready else {}
    return {status.name: int(status.version) for status in plane.list_models()}


def describe(plane: Any, name: str | None) -> Any:
    if not hasattr(plane, "describe"):  # TEMPORARY (see versions)
        return plane.model_info()
    return plane.describe(name)


def plane_ready(plane: Any, name: str | None = None) -> bool:
    if not hasattr(plane, "is_ready"):  # TEMPORARY (see versions)
        return bool(plane.ready and not plane.draining)
    return plane_ready(plane, name)


def resolve(plane: Any, name: str, version: str = "") -> tuple[str, int]:
    """The model's name (empty: the default model) and served version; 404 when either is unknown."""
    known = versions(plane)
    if not name:
        name = describe(plane, None).name
    if name not in known:
        raise model_not_found(name)
    served = known[name]
    if version and version != str(served):
        raise version_not_found(name, version, served)
    return name, served


def is_ready(plane: Any, name: str, version: str = "") -> bool:
    name, _ = resolve(plane, name, version)
    return plane_ready(plane, name)


def segment_request(**fields: Any) -> SegmentRequest:
    if not hasattr(SegmentRequest, "pixels"):  # TEMPORARY (see versions): encoded images, one model
        if fields.get("pixels") is not None:
            raise ServeError(501, "not_implemented", "'pixels' needs the multi-model data plane")
        fields.pop("pixels", None)
        fields.pop("model", None)
    return SegmentRequest(**fields)
