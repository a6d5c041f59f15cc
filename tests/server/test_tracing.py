"""OpenTelemetry tracing against real OTLP receivers (tests/otlp.py) and a live server (REST + gRPC).

One server exports over OTLP/HTTP (batching on: 4 per batch, 300 ms to fill), one over OTLP/gRPC; both
write JSON logs. A caller's ``traceparent`` is continued on REST v1 and v2, gRPC v1 (unary and stream)
and the Open Inference Protocol over gRPC; spans are checked for their parent/child structure.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from server import tracing
from server.app import Server
from server.grpc.gen import grpc_service_pb2 as v2pb
from server.grpc.gen import grpc_service_pb2_grpc as v2grpc
from server.grpc.gen import segmentation_pb2 as pb
from server.grpc.gen import segmentation_pb2_grpc as pb_grpc
from server.settings import Settings
from tests.grpc.serving import LiveServer, scene_png
from tests.otlp import Collected, GrpcReceiver, HttpReceiver, Span, by_name

MODEL = "segformer-b0-random"
ARGS = ("--max-batch-size", "4", "--max-queue-delay-ms", "300", "--log-format", "json", "--warmup-runs", "1")
SERVER = 2  # SPAN_KIND_SERVER: a request's span, which ends (and is exported) after its children
pytestmark = pytest.mark.slow


def traceparent() -> tuple[str, str, str]:
    """A fresh sampled W3C trace context: (header value, trace id, parent span id)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


@pytest.fixture(scope="module")
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    yield receiver
    receiver.close()


def _serve(model: Path, workdir: Path, *args: str) -> LiveServer:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # export every 100 ms, not 5 s
        env.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
        return LiveServer(model, workdir, *ARGS, *args).wait_ready()


@pytest.fixture(scope="module")
def traced(
    random_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory, http_receiver: HttpReceiver
) -> Iterator[LiveServer]:
    server = _serve(
        random_b0_onnx, tmp_path_factory.mktemp("traced"), "--trace-endpoint", http_receiver.endpoint
    )
    yield server
    server.stop()


def _children(spans: list[Span], parent: Span) -> dict[str, Span]:
    return {s.name: s for s in spans if s.parent_id == parent.span_id}


def test_rest_request_continues_the_callers_trace(traced: LiveServer, http_receiver: HttpReceiver) -> None:
    header, trace_id, parent = traceparent()
    headers = {"traceparent": header, "X-Request-ID": "req-rest-1", "Content-Type": "image/png"}
    answer = httpx.post(
        f"{traced.rest_url}/v1/segment?format=json", content=scene_png(96, 128, 1), headers=headers
    )
    assert answer.status_code == 200 and answer.headers["x-request-id"] == "req-rest-1"
    spans = http_receiver.wait_for(lambda s: any(x.trace_id == trace_id and x.kind == SERVER for x in s))
    server = by_name(http_receiver.in_trace(trace_id), "POST /v1/segment")
    assert len(server) == 1 and server[0].parent_id == parent and server[0].kind == SERVER
    request = server[0]
    assert request.attributes["segformer.model"] == MODEL
    assert (
        request.attributes["segformer.image.width"] == 128
        and request.attributes["segformer.image.height"] == 96
    )
    assert request.attributes["segformer.mode"] == "resize" and request.attributes["segformer.status"] == 200
    assert request.service == "segformer-serve"
    children = _children(spans, request)
    assert {"decode", "preprocess", "queue", "mask", "encode"} <= set(children)
    assert (
        children["encode"].attributes["segformer.format"] == "json" == request.attributes["segformer.format"]
    )
    for child in children.values():
        assert request.start_ns <= child.start_ns <= child.end_ns <= request.end_ns
    assert children["decode"].end_ns <= children["preprocess"].end_ns <= children["queue"].end_ns
    # the batch that ran it is its own span, linked to the request
    batches = [s for s in spans if s.name == "batch" and (trace_id, request.span_id) in s.links]
    assert len(batches) == 1
    assert batches[0].attributes["segformer.runtime"] == "onnxruntime"
    assert {"segformer.batch.size", "segformer.lane", "segformer.precision"} <= set(batches[0].attributes)
    # the access line and the request's log lines carry the ids (--log-format json)
    lines = [json.loads(line) for line in traced.log_path.read_text().splitlines() if line.startswith("{")]
    assert any(line["message"].startswith("Uvicorn running on") for line in lines)  # uvicorn's too
    access = [line for line in lines if line["logger"] == "segformer.access"]
    mine = [line for line in access if line.get("request_id") == "req-rest-1"]
    assert len(mine) == 1
    assert mine[0]["trace_id"] == trace_id and mine[0]["status"] == 200 and mine[0]["model"] == MODEL
    assert mine[0]["method"] == "POST /v1/segment" and mine[0]["bytes"] == len(answer.content)


def test_v2_rest_request_continues_the_callers_trace(traced: LiveServer, http_receiver: HttpReceiver) -> None:
    header, trace_id, parent = traceparent()
    image = base64.b64encode(scene_png(64, 64, 2)).decode()
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [image]}]}
    answer = httpx.post(
        f"{traced.rest_url}/v2/models/{MODEL}/infer", json=body, headers={"traceparent": header}
    )
    assert answer.status_code == 200
    http_receiver.wait_for(lambda s: any(x.trace_id == trace_id and x.kind == SERVER for x in s))
    spans = http_receiver.in_trace(trace_id)
    (server,) = by_name(spans, "POST /v2/models/{model_name}/infer")
    assert server.parent_id == parent
    assert {"decode", "preprocess", "queue", "mask", "encode"} <= set(_children(spans, server))


def test_slide_windows_are_spans_under_their_request(traced: LiveServer, http_receiver: HttpReceiver) -> None:
    header, trace_id, _ = traceparent()
    headers = {"traceparent": header, "Content-Type": "image/png"}
    image = scene_png(600, 700, 6)
    answer = httpx.post(
        f"{traced.rest_url}/v1/segment?mode=slide", content=image, headers=headers, timeout=120
    )
    assert answer.status_code == 200
    spans = http_receiver.wait_for(lambda s: any(x.trace_id == trace_id and x.kind == SERVER for x in s))
    (request,) = by_name(http_receiver.in_trace(trace_id), "POST /v1/segment")
    assert request.attributes["segformer.mode"] == "slide"
    windows = [w for w in by_name(spans, "slide.window") if w.trace_id == trace_id]
    assert len(windows) >= 2 and {w.parent_id for w in windows} == {request.span_id}
    linked = {link for s in spans if s.name == "batch" for link in s.links}
    assert {(trace_id, w.span_id) for w in windows} <= linked  # each window rode in a batch


def test_probes_are_not_traced(traced: LiveServer, http_receiver: HttpReceiver) -> None:
    header, trace_id, _ = traceparent()
    for path in ("/healthz", "/readyz", "/metrics", "/v2/health/ready", f"/v1/models/{MODEL}/ready"):
        assert httpx.get(f"{traced.rest_url}{path}", headers={"traceparent": header}).status_code == 200
    with grpc.insecure_channel(traced.grpc_address) as channel:
        ready = v2grpc.GRPCInferenceServiceStub(channel).ServerReady
        assert ready(v2pb.ServerReadyRequest(), metadata=[("traceparent", header)]).ready
    marker, marker_trace, _ = traceparent()  # exported after the probes: once it is in, they would be
    httpx.get(f"{traced.rest_url}/v1/model", headers={"traceparent": marker})
    http_receiver.wait_for(lambda s: any(x.trace_id == marker_trace for x in s))
    assert http_receiver.in_trace(trace_id) == []


def test_requests_sharing_a_batch_both_link_to_its_span(
    traced: LiveServer, http_receiver: HttpReceiver
) -> None:
    contexts = [traceparent() for _ in range(4)]
    image = scene_png(64, 64, 3)
    start = threading.Barrier(len(contexts))
    codes: list[int] = []

    def send(header: str) -> None:
        start.wait()
        answer = httpx.post(
            f"{traced.rest_url}/v1/segment",
            content=image,
            headers={"traceparent": header, "Content-Type": "image/png"},
            timeout=60,
        )
        codes.append(answer.status_code)

    threads = [threading.Thread(target=send, args=(c[0],)) for c in contexts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [200] * 4
    traces = {c[1] for c in contexts}
    spans = http_receiver.wait_for(lambda s: sum(x.kind == SERVER and x.trace_id in traces for x in s) == 4)
    requests = {s.trace_id: s.span_id for s in spans if s.name == "POST /v1/segment" and s.trace_id in traces}
    assert len(requests) == 4
    batches = [s for s in spans if s.name == "batch" and any(link[0] in traces for link in s.links)]
    assert sum(len(b.links) for b in batches) == 4  # each request rode in exactly one batch
    shared = [b for b in batches if len(b.links) >= 2]
    assert shared, f"no batch of two or more: {[b.links for b in batches]}"
    for batch in shared:
        assert batch.attributes["segformer.batch.size"] == len(batch.links)
        assert batch.trace_id not in traces  # a root of its own, linked to the requests
        for link_trace, link_span in batch.links:
            assert requests[link_trace] == link_span


def test_grpc_stream_gives_one_request_span_per_frame(
    traced: LiveServer, http_receiver: HttpReceiver
) -> None:
    header, trace_id, parent = traceparent()
    frames = [pb.SegmentRequest(image=scene_png(48, 64, i), frame_id=i) for i in range(3)]
    with grpc.insecure_channel(traced.grpc_address) as channel:
        stub = pb_grpc.SegmentationServiceStub(channel)
        answers = list(stub.StreamSegment(iter(frames), metadata=[("traceparent", header)], timeout=60))
    assert [a.frame_id for a in answers] == [0, 1, 2] and all(a.status.code == 0 for a in answers)
    name = "segformer.v1.SegmentationService/StreamSegment"
    http_receiver.wait_for(lambda s: any(x.trace_id == trace_id and x.kind == SERVER for x in s))
    spans = http_receiver.in_trace(trace_id)
    (stream,) = by_name(spans, name)
    assert stream.parent_id == parent and stream.kind == SERVER
    frame_spans = by_name(spans, name + " frame")
    assert len(frame_spans) == 3 and {f.parent_id for f in frame_spans} == {stream.span_id}
    for frame in frame_spans:
        assert frame.attributes["segformer.status"] == 200 and frame.attributes["segformer.model"] == MODEL
        assert {"decode", "preprocess", "queue", "mask", "encode"} <= set(_children(spans, frame))


def test_grpc_v1_unary_call_continues_the_callers_trace(
    traced: LiveServer, http_receiver: HttpReceiver
) -> None:
    header, trace_id, parent = traceparent()
    request = pb.SegmentRequest(image=scene_png(40, 40, 7), mask_format=pb.MASK_FORMAT_RAW)
    with grpc.insecure_channel(traced.grpc_address) as channel:
        answer = pb_grpc.SegmentationServiceStub(channel).Segment(request, metadata=[("traceparent", header)])
    assert answer.model == MODEL
    http_receiver.wait_for(lambda s: any(x.trace_id == trace_id and x.kind == SERVER for x in s))
    spans = http_receiver.in_trace(trace_id)
    (call,) = by_name(spans, "segformer.v1.SegmentationService/Segment")
    assert call.parent_id == parent and call.attributes["rpc.method"] == "Segment"
    assert call.attributes["segformer.status"] == 200 and call.attributes["segformer.model"] == MODEL
    children = _children(spans, call)
    assert {"decode", "preprocess", "queue", "mask", "encode"} <= set(children)
    assert (
        children["encode"].attributes["segformer.format"]
        == "MASK_FORMAT_RAW"
        == call.attributes["segformer.format"]
    )


def test_latency_exemplars_carry_a_sampled_trace_id(traced: LiveServer, http_receiver: HttpReceiver) -> None:
    header, trace_id, _ = traceparent()
    assert httpx.post(
        f"{traced.rest_url}/v1/segment", content=scene_png(32, 32, 4), headers={"traceparent": header}
    )
    openmetrics = httpx.get(
        f"{traced.rest_url}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    lines = [line for line in openmetrics.text.splitlines() if f'trace_id="{trace_id}"' in line]
    assert any(line.startswith("segformer_request_duration_seconds_bucket") for line in lines), lines
    plain = httpx.get(f"{traced.rest_url}/metrics").text  # Prometheus text format: no exemplars
    assert "trace_id" not in plain


@pytest.fixture(scope="module")
def grpc_receiver() -> Iterator[GrpcReceiver]:
    receiver = GrpcReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def traced_grpc(
    random_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory, grpc_receiver: GrpcReceiver
) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("traced-grpc")
    args = ("--trace-endpoint", grpc_receiver.endpoint, "--trace-protocol", "grpc")
    server = _serve(random_b0_onnx, workdir, *args)
    yield server
    server.stop()


def _infer_request(image: bytes) -> v2pb.ModelInferRequest:
    request = v2pb.ModelInferRequest(model_name=MODEL, id="oip-1")
    request.inputs.add(name="image", datatype="BYTES", shape=[1]).contents.bytes_contents.append(image)
    return request


def test_oip_over_grpc_continues_the_callers_trace(traced_grpc: LiveServer, grpc_receiver: Collected) -> None:
    header, trace_id, parent = traceparent()
    with grpc.insecure_channel(traced_grpc.grpc_address) as channel:
        stub = v2grpc.GRPCInferenceServiceStub(channel)
        answer = stub.ModelInfer(_infer_request(scene_png(64, 80, 5)), metadata=[("traceparent", header)])
        assert answer.model_name == MODEL
        with pytest.raises(grpc.RpcError) as failed:  # a failed call is traced too, with its error kind
            stub.ModelInfer(_infer_request(b"not an image"), metadata=[("traceparent", header)])
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    grpc_receiver.wait_for(lambda s: sum(x.trace_id == trace_id and x.kind == SERVER for x in s) == 2)
    spans = grpc_receiver.in_trace(trace_id)
    calls = by_name(spans, "inference.GRPCInferenceService/ModelInfer")
    assert len(calls) == 2 and {c.parent_id for c in calls} == {parent}
    ok, bad = sorted(calls, key=lambda c: c.attributes["segformer.status"])
    assert ok.attributes["segformer.status"] == 200 and ok.attributes["rpc.system"] == "grpc"
    assert {"decode", "preprocess", "queue", "mask", "encode"} <= set(_children(spans, ok))
    assert bad.attributes["segformer.status"] == 400 and bad.attributes["error.type"] == "corrupt_image"


def test_tracing_off_starts_no_exporter_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    before = {t.name for t in threading.enumerate()}
    assert not tracing.configure(Settings(model=["m"]))
    assert not tracing.enabled() and {t.name for t in threading.enumerate()} == before
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")  # on: one exporter thread
    assert tracing.configure(Settings(model=["m"]))
    try:
        assert {t.name for t in threading.enumerate()} - before
    finally:
        tracing.shutdown()
    assert not tracing.enabled()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")  # the standard switch wins over the endpoint
    assert not tracing.configure(Settings(model=["m"]))
    assert os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"]


async def _threads_of_a_running_server(settings: Settings) -> set[str]:
    """The thread names of a started, ready ``Server`` in this process (stopped again after)."""
    server = Server(settings)
    await server.start()
    try:
        while not server.dataplane.is_ready():
            await asyncio.sleep(0.05)
        return {t.name for t in threading.enumerate()}
    finally:
        await server.stop()


def test_a_live_server_without_tracing_has_no_exporter_thread(
    random_b0_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    common = {"model": [str(random_b0_onnx)], "host": "127.0.0.1", "port": 0, "grpc_port": 0}
    common |= {"cache_dir": tmp_path, "warmup_runs": 0, "runtime": "onnxruntime", "demo": False}
    off = asyncio.run(_threads_of_a_running_server(Settings(**common)))
    assert not [name for name in off if name.startswith("Otel")], off
    receiver = HttpReceiver()  # the same check sees the exporter's thread when tracing is on
    try:
        on = asyncio.run(_threads_of_a_running_server(Settings(**common, trace_endpoint=receiver.endpoint)))
    finally:
        receiver.close()
    assert [name for name in on if name.startswith("Otel")]
    assert not tracing.enabled()  # Server.stop shut the exporter down
