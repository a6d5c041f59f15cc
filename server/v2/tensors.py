"""The tensors of every model, checked and converted: inputs to images, results to output tensors.

Inputs (exactly one): ``image`` BYTES ``[N]``, one encoded JPEG/PNG/WebP/BMP/TIFF per element, or
``pixels`` UINT8 ``[N, H, W, 3]`` RGB. Outputs: ``mask`` UINT8 (UINT16 above 256 classes) ``[N, H, W]``
at the original size, ``mask_png`` BYTES ``[N]`` (one PNG per image), ``classes`` BYTES ``[N]`` (JSON per
image) -- these three when none is named -- and, named, the registry's other formats as BYTES ``[N]``
(``FORMAT_OUTPUTS``; server/outputs/formats.py), with the request parameters ``classes``, ``tolerance``
and ``min_area``. Every mistake is a ``ServeError`` 400 naming the tensor.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from server import errors
from server.errors import shown
from server.outputs import masks
from server.outputs.base import Options, kept, options
from server.outputs.formats import FORMATS, OutputFormat
from server.types import SegmentResult

BYTES = "BYTES"
INPUTS: dict[str, tuple[str, list[int]]] = {"image": (BYTES, [-1]), "pixels": ("UINT8", [-1, -1, -1, 3])}
#: BYTES outputs that are a registry format, one encoded element per image
FORMAT_OUTPUTS = {
    "mask_png": "png",
    "confidence": "confidence",
    "probability": "probability",
    "rle": "rle",
    "polygons": "polygons",
    "overlay": "overlay",
}
OUTPUTS: dict[str, tuple[str, list[int]]] = {
    "mask": ("UINT8", [-1, -1, -1]),  # UINT16 for models above 256 classes; the registry's raw bytes
    "mask_png": (BYTES, [-1]),
    "classes": (BYTES, [-1]),
    **{name: (BYTES, [-1]) for name in FORMAT_OUTPUTS if name != "mask_png"},
}
MAX_RANK = 8
DEFAULT_OUTPUTS = ("mask", "mask_png", "classes")
EVERY_CLASS = Options()  # no parameters: every class, default tolerances
MASK_DATATYPES = {np.dtype(np.uint8): "UINT8", np.dtype(np.uint16): "UINT16"}
_LENGTH = struct.Struct("<I")


@dataclass
class InputTensor:
    """An input as sent: ``data`` is the raw little-endian bytes (BYTES: length-prefixed elements),
    or already split into ``elements`` (BYTES) or an ``array`` (JSON, typed gRPC contents)."""

    name: str
    datatype: str
    shape: list[int]
    raw: bytes | None = None
    elements: list[bytes] | None = None
    array: np.ndarray | None = None


@dataclass
class RequestedOutput:
    name: str
    binary: bool | None = None  # REST: the binary tensor data extension; None: the request's default


@dataclass
class InferRequest:
    model: str
    version: str = ""
    id: str = ""
    inputs: list[InputTensor] = field(default_factory=list)
    outputs: list[RequestedOutput] = field(default_factory=list)  # empty: every output
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class OutputTensor:
    name: str
    datatype: str
    shape: list[int]
    raw: bytes  # little-endian row-major; BYTES: length-prefixed elements
    elements: list[bytes] | None = None  # BYTES, for JSON
    array: np.ndarray | None = None  # numeric, for JSON


def split_bytes(raw: bytes, name: str) -> list[bytes]:
    """The elements of a serialized BYTES tensor (each a 4-byte little-endian length, then the bytes)."""
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise errors.invalid_argument(
                f"input {shown(name)}: truncated BYTES element length at byte {offset}"
            )
        (size,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise errors.invalid_argument(
                f"input {shown(name)}: BYTES element {len(items)} claims {size} bytes, "
                f"{len(raw) - offset} left"
            )
        items.append(raw[offset : offset + size])
        offset += size
    return items


def join_bytes(items: list[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(item)) + item for item in items)


def _count(shape: list[int]) -> int:
    """The elements of ``shape``, exactly (Python integers: a product beyond 64 bits is not wrapped)."""
    return math.prod(shape)


def images(inputs: list[InputTensor]) -> list[bytes] | np.ndarray:
    """The request's images: encoded bytes per element (``image``) or ``[N, H, W, 3]`` uint8 (``pixels``)."""
    names = [t.name for t in inputs]
    unknown = sorted(set(names) - INPUTS.keys())
    if unknown:
        raise errors.invalid_argument(
            f"unknown input {shown(unknown[0])}; the inputs are 'image' or 'pixels'"
        )
    if len(names) != 1:
        raise errors.invalid_argument(
            "send exactly one input: 'image' (BYTES [N], encoded images) or 'pixels' (UINT8 [N,H,W,3])"
            + (f"; got {', '.join(shown(n) for n in names[:4])}" if names else "")
        )
    tensor = inputs[0]
    datatype, _ = INPUTS[tensor.name]
    if tensor.datatype != datatype:
        raise errors.invalid_argument(
            f"input {tensor.name!r} has datatype {datatype}, got {tensor.datatype or '(none)'}"
        )
    if len(tensor.shape) > MAX_RANK:
        raise errors.invalid_argument(
            f"input {tensor.name!r} has {len(tensor.shape)} dimensions; its shape is {INPUTS[tensor.name][1]}"
        )
    shape = [int(d) for d in tensor.shape]
    if any(d < 0 for d in shape):
        raise errors.invalid_argument(f"input {tensor.name!r}: negative dimension in shape {shape}")
    return _image_elements(tensor, shape) if tensor.name == "image" else _pixels(tensor, shape)


def _image_elements(tensor: InputTensor, shape: list[int]) -> list[bytes]:
    if len(shape) != 1 or shape[0] < 1:
        raise errors.invalid_argument(f"input 'image' has shape [N] (N >= 1, one image each), got {shape}")
    items = tensor.elements if tensor.elements is not None else split_bytes(tensor.raw or b"", "image")
    if len(items) != shape[0]:
        raise errors.invalid_argument(f"input 'image' has shape {shape} but {len(items)} element(s)")
    empty = next((i for i, item in enumerate(items) if not item), None)
    if empty is not None:
        raise errors.invalid_argument(f"input 'image': element {empty} is empty (each is an encoded image)")
    return items


def _pixels(tensor: InputTensor, shape: list[int]) -> np.ndarray:
    if len(shape) != 4 or shape[3] != 3 or min(shape) < 1:
        raise errors.invalid_argument(f"input 'pixels' has shape [N, H, W, 3] (RGB), got {shape}")
    if tensor.array is not None:
        values = tensor.array.ravel()
        if values.size != _count(shape):
            raise errors.invalid_argument(f"input 'pixels' has shape {shape} but {values.size} value(s)")
        if values.size and (values.min() < 0 or values.max() > 255):
            raise errors.invalid_argument("input 'pixels': UINT8 values are 0..255")
        return values.astype(np.uint8).reshape(shape)
    raw = tensor.raw or b""
    if len(raw) != _count(shape):
        raise errors.invalid_argument(
            f"input 'pixels' has shape {shape}: {_count(shape)} bytes, got {len(raw)}"
        )
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape)


def check_outputs(requested: list[RequestedOutput]) -> list[RequestedOutput]:
    """The outputs to answer with (all when none are asked for), unknown names refused."""
    for output in requested:
        if output.name not in OUTPUTS:
            raise errors.invalid_argument(
                f"unknown output {output.name!r}; the outputs are {', '.join(repr(n) for n in OUTPUTS)}"
            )
    return requested or [RequestedOutput(name) for name in DEFAULT_OUTPUTS]


def output_options(parameters: dict[str, Any], alpha: float) -> Options:
    """The request parameters ``classes`` (ids/labels: a list or a comma-separated string),
    ``tolerance`` and ``min_area``, checked."""
    return options(parameters.get("classes"), parameters.get("tolerance"), parameters.get("min_area"), alpha)


def formats(requested: list[RequestedOutput], chosen: Options) -> list[OutputFormat]:
    """The registry formats the requested outputs encode (checked against the options)."""
    found = [FORMATS.get(FORMAT_OUTPUTS[o.name]) for o in requested if o.name in FORMAT_OUTPUTS]
    for fmt in found:
        FORMATS.check(fmt, chosen)
    return found


def build_outputs(
    results: list[SegmentResult], requested: list[RequestedOutput], chosen: Options = EVERY_CLASS
) -> list[OutputTensor]:
    """The output tensors of a request's results (``SegmentResult``s, one per element), encoded."""
    return [_output(name.name, results, chosen) for name in requested]


def _output(name: str, results: list[SegmentResult], chosen: Options) -> OutputTensor:
    n = len(results)
    if name == "mask":
        sizes = sorted({(r.height, r.width) for r in results})
        if len(sizes) > 1:
            raise errors.invalid_argument(
                f"the images of this request differ in size ({', '.join(f'{w}x{h}' for h, w in sizes)}), "
                "so 'mask' cannot be one tensor: request 'mask_png' (one PNG per image) instead"
            )
        mask = np.stack([masks.filtered(r, chosen) for r in results])
        datatype = MASK_DATATYPES[mask.dtype]
        return OutputTensor(name, datatype, list(mask.shape), masks.raw_bytes(mask), array=mask)
    if name in FORMAT_OUTPUTS:
        items = [FORMATS.get(FORMAT_OUTPUTS[name]).encode(r, chosen).data for r in results]
    else:
        items = [_classes(r, chosen) for r in results]
    return OutputTensor(name, BYTES, [n], join_bytes(items), elements=items)


def _classes(result: SegmentResult, chosen: Options) -> bytes:
    present = set(kept(result, chosen))
    stats = [c.model_dump() for c in result.classes if c.id in present]
    return json.dumps(stats, separators=(",", ":")).encode()
