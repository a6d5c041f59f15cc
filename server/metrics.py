"""Prometheus metrics, declared once here and recorded by the data plane, batcher and transports.

Label ``transport`` is ``rest`` or ``grpc``; ``model`` is the served model's name, or empty when a request
was not routed to one: a name a caller sends becomes a label only through ``model_label``, which keeps
the models of the repository and puts every other name in the one empty bucket (else each unknown name
a client tries would add series for good). Exposed on the REST app at ``GET /metrics`` (default registry).
"""

from __future__ import annotations

from collections.abc import Collection

from prometheus_client import Counter, Gauge, Histogram

from server import tracing

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter(
    "segformer_requests_total",
    "Requests handled, by transport, endpoint, final status (HTTP status code) and model.",
    ["transport", "endpoint", "status", "model"],
)
REQUEST_SECONDS = Histogram(
    "segformer_request_duration_seconds",
    "End-to-end request latency as seen by the transport (decode to encoded response).",
    ["transport", "endpoint", "model"],
    buckets=_LATENCY_BUCKETS,
)
STAGE_SECONDS = Histogram(
    "segformer_stage_duration_seconds",
    "Latency per stage: decode, preprocess, queue (wait for a batch slot), inference, postprocess, "
    "encode, total (data plane: decode to mask).",
    ["stage", "model"],
    buckets=_LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "segformer_batch_size",
    "Requests per inference batch.",
    ["model"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
)
SESSION_RUNS = Counter(
    "segformer_session_runs_total",
    "Batches run, by model and pool session: solo (every core, a request alone on an idle server) or lane.",
    ["model", "session"],
)
QUEUE_DEPTH = Gauge("segformer_queue_depth", "Requests waiting in the batcher for a session.", ["model"])
IN_FLIGHT = Gauge("segformer_in_flight_requests", "Requests inside the data plane.", ["transport"])
ERRORS = Counter(
    "segformer_errors_total",
    "Failed requests by transport and error kind (ServeError.error).",
    ["transport", "kind"],
)
MODEL_INFO = Gauge(
    "segformer_model_info",
    "The served version of each model (value 1; the series of a replaced or unloaded version is removed).",
    [
        "model",
        "version",
        "name",
        "variant",
        "num_labels",
        "precision",
        "providers",
        "mode",
        "foreign",
        "runtime",
        "inference_precision",
    ],
)
SLIDE_WINDOWS = Counter(
    "segformer_slide_windows_total", "Sliding windows run (mode=slide), each a batch item.", ["model"]
)
MODEL_READY = Gauge("segformer_model_ready", "1 while the model serves, else 0.", ["model"])
MODEL_LOADS = Counter(
    "segformer_model_loads_total", "Model loads (first loads and reloads) by outcome.", ["model", "outcome"]
)


#: the ``model`` label of requests not routed to a served model (unknown names, failures before routing)
UNROUTED = ""


def model_label(name: str | None, served: Collection[str]) -> str:
    """The ``model`` label for a name a caller sent: itself when the repository serves it, else
    ``UNROUTED`` (the one place request labels are bounded: a call naming an unknown model adds no series)."""
    return name if name and name in served else UNROUTED


def observe_request(transport: str, endpoint: str, status: int, seconds: float, model: str = "") -> None:
    """Record one finished request (every transport calls this once per request); the latency carries
    the trace id of a sampled request as its exemplar (shown in the OpenMetrics exposition)."""
    REQUESTS.labels(transport, endpoint, str(status), model).inc()
    REQUEST_SECONDS.labels(transport, endpoint, model).observe(seconds, tracing.exemplar())


def observe_error(transport: str, kind: str) -> None:
    """Record one failed request (transports call this once per ``ServeError`` they answer with); the
    kind goes on the request's span too."""
    ERRORS.labels(transport, kind).inc()
    tracing.annotate({"error.type": kind})


def observe_stage(model: str, stage: str, seconds: float) -> None:
    STAGE_SECONDS.labels(stage, model).observe(seconds, tracing.exemplar())
