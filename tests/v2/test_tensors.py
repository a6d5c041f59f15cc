"""The tensor codec without a server: BYTES serialization, input checks, outputs, the REST body."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest

from server.errors import ServeError
from server.rest.v2_body import parse_infer, render_infer
from server.types import SegmentResult
from server.v2 import tensors
from server.v2.service import InferResult
from server.v2.tensors import InputTensor, RequestedOutput
from tests.server.outputs.synthetic import with_mask


def test_bytes_elements_round_trip() -> None:
    items = [b"", b"abc", bytes(range(256))]
    raw = tensors.join_bytes(items)
    assert raw[:4] == struct.pack("<I", 0) and tensors.split_bytes(raw, "image") == items


@pytest.mark.parametrize("raw", [b"\x01\x00", struct.pack("<I", 10) + b"short"])
def test_truncated_bytes_are_refused(raw: bytes) -> None:
    with pytest.raises(ServeError, match="input 'image'") as info:
        tensors.split_bytes(raw, "image")
    assert info.value.status == 400


def test_image_and_pixels_inputs() -> None:
    raw = tensors.join_bytes([b"one", b"two"])
    assert tensors.images([InputTensor("image", "BYTES", [2], raw=raw)]) == [b"one", b"two"]
    pixels = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    got = tensors.images([InputTensor("pixels", "UINT8", [2, 3, 4, 3], raw=pixels.tobytes())])
    assert isinstance(got, np.ndarray) and np.array_equal(got, pixels)
    typed = tensors.images([InputTensor("pixels", "UINT8", [2, 3, 4, 3], array=pixels.astype(np.int64))])
    assert np.array_equal(typed, pixels)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([], "exactly one input"),
        ([InputTensor("photo", "BYTES", [1], elements=[b"x"])], "unknown input 'photo'"),
        ([InputTensor("image", "UINT8", [1], elements=[b"x"])], "datatype BYTES, got UINT8"),
        ([InputTensor("image", "BYTES", [1, 1], elements=[b"x"])], r"shape \[N\]"),
        ([InputTensor("image", "BYTES", [2], elements=[b"x"])], "1 element"),
        ([InputTensor("pixels", "UINT8", [1, 2, 2, 4], raw=bytes(16))], r"\[N, H, W, 3\]"),
        ([InputTensor("pixels", "UINT8", [1, 2, 2, 3], raw=bytes(11))], "12 bytes, got 11"),
        ([InputTensor("pixels", "UINT8", [1, 1, 1, 3], array=np.array([0, 1, 256]))], "0..255"),
        (
            [InputTensor("image", "BYTES", [1], elements=[b"x"]), InputTensor("pixels", "UINT8", [1])],
            "exactly one input",
        ),
    ],
)
def test_bad_inputs_are_400(inputs: list[InputTensor], message: str) -> None:
    with pytest.raises(ServeError, match=message) as info:
        tensors.images(inputs)
    assert info.value.status == 400


def test_outputs_default_to_all_and_unknown_ones_are_refused() -> None:
    assert [o.name for o in tensors.check_outputs([])] == ["mask", "mask_png", "classes"]
    with pytest.raises(ServeError, match="unknown output 'logits'"):
        tensors.check_outputs([RequestedOutput("logits")])


def _result(height: int, width: int, dtype: type = np.uint8) -> SegmentResult:
    return with_mask(np.arange(height * width, dtype=dtype).reshape(height, width) % 7)


def test_mask_is_one_tensor_and_mixed_sizes_ask_for_mask_png() -> None:
    (mask,) = tensors.build_outputs([_result(3, 4), _result(3, 4)], [RequestedOutput("mask")])
    assert (mask.datatype, mask.shape, len(mask.raw)) == ("UINT8", [2, 3, 4], 24)
    (wide,) = tensors.build_outputs([_result(2, 2, np.uint16)], [RequestedOutput("mask")])
    assert wide.datatype == "UINT16" and np.array_equal(np.frombuffer(wide.raw, "<u2"), wide.array.ravel())
    with pytest.raises(ServeError, match="request 'mask_png'") as info:
        tensors.build_outputs([_result(3, 4), _result(4, 3)], [RequestedOutput("mask")])
    assert info.value.status == 400
    png, classes = tensors.build_outputs(
        [_result(3, 4), _result(4, 3)], [RequestedOutput(n) for n in ("mask_png", "classes")]
    )
    assert png.shape == [2] and all(e.startswith(b"\x89PNG") for e in png.elements or [])
    assert json.loads((classes.elements or [b""])[0])[0]["label"] == "wall"


def test_rest_body_json_and_binary() -> None:
    image = b"\xff\xd8jpeg"
    body = {
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(image).decode()]}
        ]
    }
    parsed = parse_infer(json.dumps(body).encode(), None, "m", "")
    assert tensors.images(parsed.inputs) == [image]
    raw = tensors.join_bytes([image])
    head = {
        "id": "7",
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(raw)}}
        ],
        "outputs": [{"name": "mask", "parameters": {"binary_data": True}}, {"name": "classes"}],
    }
    header = json.dumps(head).encode()
    parsed = parse_infer(header + raw, str(len(header)), "m", "1")
    assert (parsed.id, parsed.version, tensors.images(parsed.inputs)) == ("7", "1", [image])
    assert [(o.name, o.binary) for o in parsed.outputs] == [("mask", True), ("classes", None)]
    with pytest.raises(ServeError, match="binary data size mismatch"):
        parse_infer(header + raw + b"extra", str(len(header)), "m", "")
    with pytest.raises(ServeError, match="base64"):
        parse_infer(json.dumps({"inputs": [{**body["inputs"][0], "data": ["%%%"]}]}).encode(), None, "m", "")


def test_rest_render_puts_binary_outputs_after_the_json() -> None:
    outputs = tensors.build_outputs([_result(2, 3)], [RequestedOutput("mask"), RequestedOutput("mask_png")])
    result = InferResult("m", "1", "x", outputs, [RequestedOutput("mask", True), RequestedOutput("mask_png")])
    content, length = render_infer(result, {})
    assert length is not None
    head = json.loads(content[:length])
    assert head["outputs"][0]["parameters"] == {"binary_data_size": 6} and content[length:] == outputs[0].raw
    assert head["outputs"][1]["parameters"] == {"content_type": "base64"} and head["id"] == "x"
    assert base64.b64decode(head["outputs"][1]["data"][0]).startswith(b"\x89PNG")
    content, length = render_infer(result, {"binary_data_output": False})
    assert length is not None  # mask still binary: its own parameter wins
