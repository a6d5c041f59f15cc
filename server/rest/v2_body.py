"""The REST body of a v2 inference: JSON tensors and the binary tensor data extension, both ways.

A request is a JSON header, optionally followed by binary tensor data: ``Inference-Header-Content-Length``
says where the JSON ends, and each input with ``parameters.binary_data_size`` takes its bytes from what
follows, in input order. In JSON, BYTES elements are strings: ``image`` elements are base64, like the
``mask_png`` output (marked ``"content_type": "base64"``); ``classes`` elements are JSON text. An output is
sent as binary when its ``parameters.binary_data`` is true, else when the request's
``parameters.binary_data_output`` is.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np

from server import errors
from server.errors import shown
from server.v2.service import InferResult
from server.v2.tensors import BYTES, InferRequest, InputTensor, RequestedOutput

HEADER = "Inference-Header-Content-Length"
MAX_NESTING = 8  # a tensor of rank 4 ([N, H, W, 3]) nests 4 deep


def _json(data: bytes) -> dict[str, Any]:
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.invalid_argument(f"the request's JSON is malformed: {exc}") from None
    except RecursionError:
        raise errors.invalid_argument("the request's JSON is nested too deeply") from None
    if not isinstance(body, dict):
        raise errors.invalid_argument("the request's JSON is an object")
    return body


def _header_length(value: str | None, size: int) -> int | None:
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        raise errors.invalid_argument(f"{HEADER} is a number, got {value!r}") from None
    if not 0 < length <= size:
        raise errors.invalid_argument(f"{HEADER} is {length} but the body has {size} bytes")
    return length


def _flatten(data: Any, name: str) -> list[Any]:
    """The elements of a JSON tensor's ``data``, flat or nested (row-major) at most ``MAX_NESTING`` deep."""
    flat: list[Any] = []
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, list):
            flat.append(item)
        elif depth >= MAX_NESTING:
            raise errors.invalid_argument(
                f"input {shown(name)}: 'data' is nested deeper than {MAX_NESTING} lists"
            )
        else:
            stack.extend((x, depth + 1) for x in reversed(item))
    return flat


def _uint8(values: list[Any], name: str) -> np.ndarray:
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in values):
        raise errors.invalid_argument(f"input {shown(name)}: UINT8 'data' holds integers 0..255")
    return np.asarray(values, dtype=np.uint8)


def _b64(item: Any, name: str) -> bytes:
    if not isinstance(item, str):
        raise errors.invalid_argument(f"input {shown(name)}: JSON BYTES elements are base64 strings")
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise errors.invalid_argument(
            f"input {shown(name)}: JSON BYTES elements are base64 strings"
        ) from None


def _parameters(item: dict[str, Any], what: str) -> dict[str, Any]:
    parameters = item.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise errors.invalid_argument(f"{what}: 'parameters' is an object")
    return parameters


def _input(item: Any, index: int, binary: memoryview, offset: int) -> tuple[InputTensor, int]:
    if not isinstance(item, dict):
        raise errors.invalid_argument(f"inputs[{index}] is an object")
    name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
    if not isinstance(name, str) or not isinstance(datatype, str):
        raise errors.invalid_argument(f"inputs[{index}] needs a string 'name' and 'datatype'")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise errors.invalid_argument(f"input {shown(name)}: 'shape' is a list of integers")
    tensor = InputTensor(name, datatype, shape)
    size = _parameters(item, f"input {shown(name)}").get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
            raise errors.invalid_argument(
                f"input {shown(name)}: binary_data_size {size!r} but {len(binary) - offset} binary bytes left"
            )
        tensor.raw = bytes(binary[offset : offset + size])
        return tensor, offset + size
    if "data" not in item:
        raise errors.invalid_argument(f"input {shown(name)} has neither 'data' nor binary_data_size")
    values = _flatten(item["data"], name)
    if datatype == BYTES:
        tensor.elements = [_b64(v, name) for v in values]
    elif datatype == "UINT8":
        tensor.array = _uint8(values, name)
    return tensor, offset


def parse_infer(body: bytes, header_length: str | None, model: str, version: str) -> InferRequest:
    """An ``InferRequest`` from a REST body (JSON, or JSON + binary tensor data)."""
    length = _header_length(header_length, len(body))
    view = memoryview(body)
    head = _json(bytes(view[:length]) if length is not None else body)
    binary = view[length:] if length is not None else memoryview(b"")
    inputs, outputs, parameters = head.get("inputs"), head.get("outputs") or [], head.get("parameters") or {}
    if not isinstance(inputs, list) or not inputs:
        raise errors.invalid_argument("the request has no 'inputs'")
    if not isinstance(outputs, list) or not isinstance(parameters, dict):
        raise errors.invalid_argument("'outputs' is a list and 'parameters' an object")
    request_id = head.get("id") or ""
    if not isinstance(request_id, str):
        raise errors.invalid_argument("the request's 'id' is a string")
    request = InferRequest(model, version, request_id, parameters=parameters)
    offset = 0
    for index, item in enumerate(inputs):
        tensor, offset = _input(item, index, binary, offset)
        request.inputs.append(tensor)
    if offset != len(binary):
        raise errors.invalid_argument(
            f"binary data size mismatch: the inputs' binary_data_size add up to {offset} bytes, "
            f"the body carries {len(binary)} after the JSON header"
        )
    for item in outputs:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise errors.invalid_argument("each of 'outputs' is an object with a 'name'")
        flag = _parameters(item, f"output {shown(item['name'])}").get("binary_data")
        request.outputs.append(RequestedOutput(item["name"], None if flag is None else bool(flag)))
    return request


def render_infer(result: InferResult, parameters: dict[str, Any]) -> tuple[bytes, int | None]:
    """The response body and, when binary tensor data follows the JSON, the JSON's length."""
    default = bool(parameters.get("binary_data_output", False))
    outputs, blobs = [], []
    for tensor, asked in zip(result.outputs, result.requested, strict=True):
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        if asked.binary if asked.binary is not None else default:
            entry["parameters"] = {"binary_data_size": len(tensor.raw)}
            blobs.append(tensor.raw)
        elif tensor.array is not None:
            entry["data"] = tensor.array.ravel().tolist()
        elif tensor.name == "classes":
            entry["data"] = [e.decode() for e in tensor.elements or []]
        else:
            entry["parameters"] = {"content_type": "base64"}
            entry["data"] = [base64.b64encode(e).decode("ascii") for e in tensor.elements or []]
        outputs.append(entry)
    head: dict[str, Any] = {"model_name": result.model, "model_version": result.version, "outputs": outputs}
    if result.id:
        head["id"] = result.id
    header = json.dumps(head, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)
