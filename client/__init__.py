"""segformer-serve's client, a separate program beside ``server/``: the Python client (REST and gRPC),
``segformer-client`` (images, folders, videos, streams) and ``segformer-eval`` (see docs/client.md)."""

from client.client import SegformerClient
from client.types import ClassInfo, Segmentation, SegmentationError

__all__ = ["ClassInfo", "SegformerClient", "Segmentation", "SegmentationError"]
