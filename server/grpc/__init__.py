"""gRPC transport: ``segformer.v1.SegmentationService`` plus health and reflection (see docs/grpc.md).

Importing ``server.grpc`` (or the generated ``server.grpc.gen``, as the client does) stays light: the
servicer and the data plane are only imported when a server is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import grpc

    from server.settings import Settings


def build_grpc_server(dataplane: Any, settings: Settings) -> grpc.aio.Server:
    """A bound, not yet started ``grpc.aio.Server`` for ``dataplane`` (see ``server.grpc.server``)."""
    from server.grpc.server import build_grpc_server as build

    return build(dataplane, settings)
