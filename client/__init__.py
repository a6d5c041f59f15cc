"""Python client for segformer-serve (REST and gRPC) and the ``segformer-client`` CLI (see docs/grpc.md)."""

from client.client import SegformerClient
from client.types import ClassInfo, Segmentation, SegmentationError

__all__ = ["ClassInfo", "SegformerClient", "Segmentation", "SegmentationError"]
