"""OpenTelemetry tracing: off by default, configured once by ``Server`` at start-up (never at import).

Tracing is on when ``--trace-endpoint`` or the standard ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`` names an
OTLP receiver, or ``OTEL_TRACES_EXPORTER=otlp`` asks for the exporter's default; ``OTEL_TRACES_EXPORTER=none``
or ``OTEL_SDK_DISABLED=true`` keep it off. The SDK (the ``tracing`` extra) reads the other ``OTEL_*``
variables itself: ``OTEL_TRACES_SAMPLER`` (default: the caller's decision, else every request),
``OTEL_SERVICE_NAME``, ``OTEL_BSP_SCHEDULE_DELAY``... Off, the tracer is the API's no-op one: no provider,
no exporter thread, spans cost a context switch each and the stage helpers return at once.

The caller's W3C ``traceparent`` is continued (``server_span``: REST headers, gRPC metadata). Stages that
already measure themselves (decode, preprocess, queue, mask, encode) are recorded as spans after the fact
from their monotonic times (``stage``), so the code that times them is not restructured.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from server.settings import Settings

log = logging.getLogger("segformer.tracing")
Attributes = Mapping[str, AttributeValue]
INSTRUMENTATION = "segformer-serve"


class _State:
    """The process's tracer: the API's no-op tracer until ``configure`` installs a provider."""

    def __init__(self) -> None:
        self.tracer: trace.Tracer = trace.NoOpTracer()
        self.provider: TracerProvider | None = None
        self.propagator = TraceContextTextMapPropagator()

    @property
    def enabled(self) -> bool:
        return self.provider is not None


_state = _State()


def _endpoint(settings: Settings) -> str | None:
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return None
    endpoint = (
        settings.trace_endpoint
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    if endpoint:
        return endpoint
    return "" if exporter == "otlp" else None  # "": the exporter's own default (localhost:4318 / 4317)


def _protocol(settings: Settings) -> str:
    env = os.environ
    chosen = (
        settings.trace_protocol
        or env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if chosen not in ("http/protobuf", "grpc"):
        raise ValueError(f"OTLP protocol {chosen!r}: use http/protobuf or grpc")
    return chosen


def configure(settings: Settings) -> bool:
    """Install the tracer provider with a batching OTLP exporter when tracing is asked for; True if on."""
    endpoint = _endpoint(settings)
    if endpoint is None or _state.enabled:
        return _state.enabled
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
    except ImportError as exc:
        raise ValueError("tracing needs the `tracing` extra: pip install 'segformer-serve[tracing]'") from exc
    protocol = _protocol(settings)
    exporter: SpanExporter
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        insecure = not endpoint.startswith("https://") if endpoint else None
        exporter = GrpcExporter(endpoint=endpoint or None, insecure=insecure)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        if endpoint and not endpoint.rstrip("/").endswith("/v1/traces"):  # a base URL, as the env var's
            endpoint = endpoint.rstrip("/") + "/v1/traces"
        exporter = HttpExporter(endpoint=endpoint or None)
    named = "OTEL_SERVICE_NAME" in os.environ or "service.name" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    resource = Resource.create({} if named else {SERVICE_NAME: INSTRUMENTATION})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _state.provider = provider
    _state.tracer = provider.get_tracer(INSTRUMENTATION)
    log.info("tracing: OTLP %s to %s", protocol, endpoint or "the exporter's default endpoint")
    return True


def shutdown() -> None:
    """Flush the spans still buffered and stop the exporter (``Server.stop``); tracing is off after."""
    provider, _state.provider = _state.provider, None
    _state.tracer = trace.NoOpTracer()
    if provider is not None:
        provider.shutdown()


def flush() -> None:
    """Export the spans buffered so far, now (the exporter sends every ``OTEL_BSP_SCHEDULE_DELAY``)."""
    if _state.provider is not None:
        _state.provider.force_flush()


def enabled() -> bool:
    return _state.enabled


def extract(carrier: Mapping[str, str]) -> Context:
    """The caller's trace context from W3C ``traceparent`` / ``tracestate`` (lower-case keys)."""
    return _state.propagator.extract(carrier)


@contextlib.contextmanager
def server_span(
    name: str, carrier: Mapping[str, str], attributes: Attributes | None = None
) -> Iterator[Span]:
    """The transport's span for one request, child of the caller's ``traceparent`` when it sent one."""
    span = start_server_span(name, carrier, attributes)
    with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
        yield span


def start_server_span(name: str, carrier: Mapping[str, str], attributes: Attributes | None = None) -> Span:
    """``server_span``'s span, begun but not current: a stream's, made current around each step with
    ``current`` (a context held across an async generator's ``yield`` cannot always be reset) and ended
    by its caller."""
    return _state.tracer.start_span(
        name,
        context=extract(carrier),
        kind=SpanKind.SERVER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    )


def current(span: Span | None) -> contextlib.AbstractContextManager[object]:
    """``span`` as the current span inside (nothing when None); it is not ended on exit."""
    if span is None:
        return contextlib.nullcontext()
    return trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False)


@contextlib.contextmanager
def span(name: str, attributes: Attributes | None = None) -> Iterator[Span]:
    """An internal child span of the current one (a request span per stream frame, a slide window)."""
    with _state.tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


def _epoch_ns(monotonic_s: float, offset_ns: int) -> int:
    return int(monotonic_s * 1e9) + offset_ns


def stage(name: str, seconds: float, end: float | None = None, attributes: Attributes | None = None) -> None:
    """A finished child span of the current one: ``seconds`` long, ending at ``end`` (``time.monotonic()``;
    None: now)."""
    if not _state.enabled or not trace.get_current_span().is_recording():
        return
    offset = time.time_ns() - time.monotonic_ns()
    end = time.monotonic() if end is None else end
    child = _state.tracer.start_span(name, start_time=_epoch_ns(end - seconds, offset), attributes=attributes)
    child.end(end_time=_epoch_ns(end, offset))


def encoded(seconds: float, output_format: str) -> None:
    """The response was just encoded: its ``encode`` stage, and the format on the request's span."""
    annotate({"segformer.format": output_format})
    stage("encode", seconds, attributes={"segformer.format": output_format})


def annotate(attributes: Attributes) -> None:
    """Set attributes on the current span (model, image size, mode, format...)."""
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes(attributes)


def outcome(status: int) -> None:
    """The request's final status (HTTP-style) on the current span; a 5xx marks it as an error.
    (The error kind is set where the error is counted, ``metrics.observe_error``.)"""
    current = trace.get_current_span()
    if not current.is_recording():
        return
    current.set_attribute("segformer.status", status)
    if status >= 500:
        current.set_status(Status(StatusCode.ERROR))


def current_context() -> SpanContext | None:
    """The current span's context when it is sampled (for a batch span's links), else None."""
    context = trace.get_current_span().get_span_context()
    return context if context.is_valid and context.trace_flags.sampled else None


@contextlib.contextmanager
def batch_span(requests: Sequence[SpanContext | None], attributes: Attributes) -> Iterator[None]:
    """One span per batch run, a root of its own linked to each sampled request (or window) in it."""
    links = [Link(context) for context in requests if context is not None]
    if not _state.enabled or not links:
        yield
        return
    with _state.tracer.start_as_current_span("batch", context=Context(), links=links, attributes=attributes):
        yield


def ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, for log lines; None outside a traced request."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)


def exemplar() -> dict[str, str] | None:
    """A Prometheus exemplar (``trace_id``) for the current request when it is sampled."""
    context = current_context()
    return {"trace_id": trace.format_trace_id(context.trace_id)} if context is not None else None
