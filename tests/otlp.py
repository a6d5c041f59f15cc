"""Real OTLP trace receivers for the tracing tests: OTLP/HTTP (``POST /v1/traces``) and OTLP/gRPC
(``TraceService/Export``), each on a free loopback port, decoding the ``opentelemetry-proto``
``ExportTraceServiceRequest`` payloads into ``Span`` records."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as service_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, object]
    links: list[tuple[str, str]] = field(default_factory=list)
    service: str = ""


def _value(value: AnyValue) -> object:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, which) if which else None


class Collected:
    """The spans received so far (thread-safe), with waits for the ones a test expects."""

    def __init__(self) -> None:
        self._spans: list[Span] = []
        self._lock = threading.Lock()
        self.payloads = 0

    def add(self, request: service_pb2.ExportTraceServiceRequest) -> None:
        spans = []
        for resource in request.resource_spans:
            attributes = {a.key: _value(a.value) for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                for s in scope.spans:
                    spans.append(
                        Span(
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            kind=s.kind,
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                            attributes={a.key: _value(a.value) for a in s.attributes},
                            links=[(link.trace_id.hex(), link.span_id.hex()) for link in s.links],
                            service=str(attributes.get("service.name", "")),
                        )
                    )
        with self._lock:
            self._spans.extend(spans)
            self.payloads += 1

    @property
    def spans(self) -> list[Span]:
        with self._lock:
            return list(self._spans)

    def wait_for(self, found: Callable[[list[Span]], bool], timeout: float = 20.0) -> list[Span]:
        """All spans, once ``found(spans)`` holds (AssertionError with what came after ``timeout``)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            spans = self.spans
            if found(spans):
                return spans
            time.sleep(0.05)
        raise AssertionError(
            f"spans not received in {timeout} s: {[(s.name, s.trace_id) for s in self.spans]}"
        )

    def in_trace(self, trace_id: str) -> list[Span]:
        return [s for s in self.spans if s.trace_id == trace_id]


def by_name(spans: Iterable[Span], name: str) -> list[Span]:
    return [s for s in spans if s.name == name]


class HttpReceiver(Collected):
    """OTLP/HTTP with protobuf bodies: ``endpoint`` is the base URL to give the exporter."""

    def __init__(self) -> None:
        super().__init__()
        collected = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_response(404)
                    self.end_headers()
                    return
                collected.add(service_pb2.ExportTraceServiceRequest.FromString(body))
                reply = service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _TraceService(service_grpc.TraceServiceServicer):
    def __init__(self, collected: Collected) -> None:
        self.collected = collected

    def Export(
        self, request: service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> service_pb2.ExportTraceServiceResponse:
        self.collected.add(request)
        return service_pb2.ExportTraceServiceResponse()


class GrpcReceiver(Collected):
    """OTLP/gRPC (``opentelemetry.proto.collector.trace.v1.TraceService``) on a loopback port."""

    def __init__(self) -> None:
        super().__init__()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        service_grpc.add_TraceServiceServicer_to_server(_TraceService(self), self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{port}"
        self._server.start()

    def close(self) -> None:
        self._server.stop(None)
