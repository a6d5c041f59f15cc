"""``ModelStreamInfer`` as v1's streams (``server.grpc.streams``): back-pressure instead of failed
requests when the queue is full, and SIGTERM with a stream open: every request taken is answered in
order, then UNAVAILABLE (``shutting_down``) at once, exit 0. Raw protos, a server of their own."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from server.grpc.gen import grpc_service_pb2 as pb
from server.grpc.gen import grpc_service_pb2_grpc as pb_grpc
from tests.grpc.serving import LiveServer, scene_png, sigterm_mid_stream

MODEL = "segformer-b0-random"
QUEUE = 4


def _request(index: int, height: int = 48) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=MODEL, id=f"r{index}")
    tensor = request.inputs.add(name="image", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(scene_png(height, 64, seed=index))
    request.outputs.add(name="mask")
    return request


@pytest.fixture(scope="module")
def small_queue(random_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(
        random_b0_onnx, tmp_path_factory.mktemp("v2-streams"),
        "--max-queue-size", str(QUEUE), "--max-batch-size", "1", "--log-level", "warning",
    )  # fmt: skip
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def _stream(address: str, offset: int, count: int, out: list[pb.ModelStreamInferResponse]) -> None:
    with grpc.insecure_channel(address) as channel:
        call = pb_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(
            iter([_request(offset + i) for i in range(count)]), timeout=240
        )
        out.extend(call)


def test_streams_wait_for_room_instead_of_failing_requests(small_queue: LiveServer) -> None:
    # 6 streams x up to 8 in flight against a queue of 4: without back-pressure most come back queue_full
    results: list[list[pb.ModelStreamInferResponse]] = [[] for _ in range(6)]
    threads = [
        threading.Thread(target=_stream, args=(small_queue.grpc_address, 100 * s, 10, results[s]))
        for s in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    for s, responses in enumerate(results):
        assert [r.infer_response.id for r in responses] == [f"r{100 * s + i}" for i in range(10)]
        assert [r.error_message for r in responses if r.error_message] == []
        assert all(list(r.infer_response.outputs[0].shape) == [1, 48, 64] for r in responses)


def _answered(response: pb.ModelStreamInferResponse) -> int:
    assert not response.error_message, response.error_message
    index = int(response.infer_response.id[1:])
    assert list(response.infer_response.outputs[0].shape) == [1, 40 + index % 5, 64]
    return index


def test_sigterm_ends_an_open_stream_after_answering_it(random_b0_onnx: Path, tmp_path: Path) -> None:
    sigterm_mid_stream(
        random_b0_onnx,
        tmp_path,
        lambda channel, requests: pb_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(
            requests, timeout=120
        ),
        lambda i: _request(i, 40 + i % 5),
        _answered,
    )
