"""Any of the server's output formats (docs/outputs.md) for one image, over REST or gRPC.

The client does not keep its own list of formats: the server's registry is the one list, and the server
refuses an unknown name, an unknown class or a negative tolerance in words (a ``SegmentationError``
here). An answer is its bytes, their content type and the server's fields (REST ``X-Segformer-*``
headers, gRPC ``Output.fields``: ``classes``, ``model``, ``shape`` and ``dtype`` for ``raw``...).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from client.types import SegmentationError
from server.grpc.gen import segmentation_pb2 as pb

#: a file suffix per content type (anything else: .bin)
SUFFIXES = {
    "image/png": ".png",
    "application/json": ".json",
    "application/geo+json": ".geojson",
    "application/vnd.coco-rle+json": ".rle.json",
    "application/vnd.segformer.probability+json": ".probability.json",
    "application/octet-stream": ".raw",
}


@dataclass(frozen=True)
class OutputRequest:
    """A format by name and its parameters (``classes``: ids or labels)."""

    format: str
    classes: tuple[str, ...] = ()
    tolerance: float = 0.0
    min_area: float = 0.0

    def params(self) -> dict[str, str]:
        """REST query parameters."""
        params = {"format": self.format}
        if self.classes:
            params["classes"] = ",".join(self.classes)
        if self.tolerance:
            params["tolerance"] = repr(self.tolerance)
        if self.min_area:
            params["min_area"] = repr(self.min_area)
        return params

    def into(self, request: pb.SegmentRequest) -> pb.SegmentRequest:
        """``request`` with this format's fields set (stubs without them: a clear error)."""
        if "format" not in pb.SegmentRequest.DESCRIPTOR.fields_by_name:
            raise SegmentationError(
                "INVALID_ARGUMENT", "invalid_argument", "this segformer.v1 has no SegmentRequest.format"
            )
        request.format = self.format
        request.classes.extend(self.classes)
        request.tolerance, request.min_area = self.tolerance, self.min_area
        return request


@dataclass(frozen=True)
class Output:
    data: bytes
    content_type: str
    fields: dict[str, str]

    @property
    def suffix(self) -> str:
        return SUFFIXES.get(self.content_type.split(";")[0].strip(), ".bin")


def from_response(response: httpx.Response) -> Output:
    prefix = "x-segformer-"
    fields = {k[len(prefix) :]: v for k, v in response.headers.items() if k.lower().startswith(prefix)}
    return Output(response.content, response.headers.get("content-type", ""), fields)


def from_proto(output: pb.Output) -> Output:
    return Output(output.data, output.content_type, dict(output.fields))
