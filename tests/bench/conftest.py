"""Fixtures for the bench harness tests: a tiny contract-shaped ONNX graph and a fake REST server."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image


@pytest.fixture(scope="session")
def tiny_graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``image`` uint8 NHWC (+ ``output_size``) → ``mask`` uint8 and ``logits`` [N, 3, H/4, W/4]."""
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((3, 3, 4, 4), np.float32), "w")
    default = numpy_helper.from_array(np.array([0, 0], np.int64), "output_size")
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["x"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["x", "w"], ["logits"], strides=[4, 4]),
        helper.make_node("Shape", ["logits"], ["nc"], start=0, end=2),
        helper.make_node("Concat", ["nc", "output_size"], ["sizes"], axis=0),
        helper.make_node("Resize", ["logits", "", "", "sizes"], ["up"], mode="linear"),
        helper.make_node("ArgMax", ["up"], ["labels"], axis=1, keepdims=0),
        helper.make_node("Cast", ["labels"], ["mask"], to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info("image", TensorProto.UINT8, ["n", "h", "w", 3]),
            helper.make_tensor_value_info("output_size", TensorProto.INT64, [2]),
        ],
        [
            helper.make_tensor_value_info("mask", TensorProto.UINT8, ["n", "oh", "ow"]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 3, "lh", "lw"]),
        ],
        initializer=[weight, default],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    props = {"segformer.format": "1", "segformer.inference_size": "[64, 64]", "segformer.num_labels": "3"}
    helper.set_model_props(model, props)
    path = tmp_path_factory.mktemp("graph") / "tiny.onnx"
    onnx.save(model, str(path))
    return path


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    answer = _png()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        ok = self.path == "/v1/segment"
        body = self.answer if ok else b"not found"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return


@pytest.fixture()
def fake_rest() -> Iterator[str]:
    """A threaded HTTP server answering ``POST /v1/segment`` with a PNG; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
