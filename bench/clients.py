"""Thin per-client senders for the load generator: one connection each, JPEG bytes in, PNG mask out.

- ``rest``: ``POST /v1/segment`` with the raw image body (``http.client``, keep-alive); a query in the
  URL (``http://host:port/?mode=native``) is passed on.
- ``triton``: the KServe v2 ``/infer`` endpoint of the PyTriton baseline with the binary-tensor
  extension (one BYTES element: the JPEG), so both servers get exactly the same bytes over the same
  kind of connection and do the same work (decode, resize, graph, PNG encode).
- ``grpc``: the project's generated stubs (unary ``Segment``, PNG mask), one channel per client.
- ``grpc-stream``: one ``StreamSegment`` call per client kept open for the whole run, one frame in
  flight at a time (send a frame, read its answer); a failed stream is reopened on the next frame.

Each sender raises on anything but a well-formed answer.
"""

from __future__ import annotations

import http.client
import itertools
import json
import queue
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

TRITON_MODEL = "segformer"


@dataclass
class Sender:
    """``send(jpeg)`` raises unless the answer is a PNG mask; ``close()`` drops the connection."""

    send: Callable[[bytes], None]
    close: Callable[[], None]


class _Http:
    """One keep-alive HTTP/1.1 connection that reconnects after a failure."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.query = f"?{parts.query}" if parts.query else ""  # e.g. ?mode=native
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
        try:
            self.conn.request("POST", path, body=body, headers=headers)
            response = self.conn.getresponse()
            payload = response.read()
        except Exception:
            self.conn.close()
            self.conn = None
            raise
        return response.status, {k.lower(): v for k, v in response.getheaders()}, payload

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def rest_sender(url: str) -> Sender:
    http = _Http(url)

    def send(body: bytes) -> None:
        status, _, payload = http.post("/v1/segment" + http.query, body, {"Content-Type": "image/jpeg"})
        if status != 200 or not payload.startswith(b"\x89PNG"):
            raise RuntimeError(f"HTTP {status}: {payload[:200]!r}")

    return Sender(send, http.close)


def triton_request(body: bytes) -> tuple[bytes, dict[str, str]]:
    """A KServe v2 binary-extension request carrying one JPEG as a ``[1, 1]`` BYTES tensor."""
    tensor = struct.pack("<I", len(body)) + body
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "image_bytes",
                    "shape": [1, 1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(tensor)},
                }
            ],
            "outputs": [{"name": "mask_png", "parameters": {"binary_data": True}}],
        }
    ).encode()
    headers = {
        "Inference-Header-Content-Length": str(len(header)),
        "Content-Type": "application/octet-stream",
    }
    return header + tensor, headers


def triton_sender(url: str) -> Sender:
    http = _Http(url)
    path = f"/v2/models/{TRITON_MODEL}/infer"

    def send(body: bytes) -> None:
        request, headers = triton_request(body)
        status, answer_headers, payload = http.post(path, request, headers)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {payload[:200]!r}")
        binary = payload[int(answer_headers.get("inference-header-content-length", len(payload))) :]
        if binary[4:8] != b"\x89PNG":
            raise RuntimeError(f"not a PNG mask: {payload[:200]!r}")

    return Sender(send, http.close)


def _channel(target: str) -> Any:
    import grpc

    return grpc.insecure_channel(
        target,
        options=[
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20),
        ],
    )


def grpc_sender(target: str) -> Sender:
    from server.grpc.gen import segmentation_pb2 as pb
    from server.grpc.gen import segmentation_pb2_grpc as pb_grpc

    channel = _channel(target)
    stub = pb_grpc.SegmentationServiceStub(channel)

    def send(body: bytes) -> None:
        reply = stub.Segment(pb.SegmentRequest(image=body), timeout=300)
        if not reply.mask.data.startswith(b"\x89PNG"):
            raise RuntimeError("gRPC reply without a PNG mask")

    return Sender(send, channel.close)


class _Stream:
    """One open ``StreamSegment`` call: frames go in through a queue, answers come back in order."""

    def __init__(self, stub: Any) -> None:
        self.requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.answers = stub.StreamSegment(iter(self.requests.get, None))

    def close(self) -> None:
        self.requests.put(None)  # ends the request iterator: the server finishes the stream
        self.answers.cancel()


def grpc_stream_sender(target: str) -> Sender:
    from server.grpc.gen import segmentation_pb2 as pb
    from server.grpc.gen import segmentation_pb2_grpc as pb_grpc

    channel = _channel(target)
    stub = pb_grpc.SegmentationServiceStub(channel)
    frames = itertools.count()
    state: dict[str, _Stream | None] = {"stream": None}

    def send(body: bytes) -> None:
        stream = state["stream"] or _Stream(stub)
        state["stream"] = stream
        frame = next(frames)
        stream.requests.put(pb.SegmentRequest(image=body, frame_id=frame))
        try:
            reply = next(stream.answers)
        except BaseException:
            stream.close()
            state["stream"] = None  # reopened on the next frame
            raise
        if reply.HasField("status"):
            raise RuntimeError(f"frame {frame}: {reply.status.error}: {reply.status.message}")
        if reply.frame_id != frame or not reply.mask.data.startswith(b"\x89PNG"):
            raise RuntimeError(f"frame {frame}: answer for frame {reply.frame_id} without a PNG mask")

    def close() -> None:
        if state["stream"] is not None:
            state["stream"].close()
        channel.close()

    return Sender(send, close)


def make_client(target: str, url: str) -> Sender:
    factories = {
        "rest": rest_sender,
        "triton": triton_sender,
        "grpc": grpc_sender,
        "grpc-stream": grpc_stream_sender,
    }
    return factories[target](url)
