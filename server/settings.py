"""All server configuration: one pydantic-settings object, built once in ``main()`` (from the flags
and environment by ``server.flags.load_settings``).

Every field is a CLI flag (``--max-batch-size``) and an environment variable
(``SEGFORMER_MAX_BATCH_SIZE``); flags win over the environment, which wins over the defaults.
Nothing else in ``server/`` reads the environment, except the standard OpenTelemetry variables
(``OTEL_*``), which ``server/tracing.py`` reads once when the Server starts (docs/tracing.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MODEL = "nvidia/segformer-b0-finetuned-ade-512-512"
MiB = 1024 * 1024


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "segformer-serve"


class ModelSettings(BaseModel):
    """What is served: the models, the repository, the admin API, the export cache."""

    model_config = ConfigDict(protected_namespaces=())

    model: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="a model to serve, repeatable: NAME=SOURCE or SOURCE (contract .onnx, foreign SegFormer "
        ".onnx, HF folder, hub id, .pth or random:bN); NAME@bf16=SOURCE, NAME@openvino@fp32=SOURCE: that "
        "model's own precision and/or runtime; the first is the default model (environment: "
        f"comma-separated); none and no --model-repository: {DEFAULT_MODEL}",
    )
    model_repository: Path | None = Field(
        None, description="a folder of models, one file or folder each, named by its stem"
    )
    repository_poll_s: float = Field(
        0.0, ge=0, description="rescan --model-repository every N seconds, 0 = only on request"
    )
    admin_token: SecretStr | None = Field(
        None, description="bearer token of the admin endpoints (load, unload, rescan); unset: they are off"
    )
    admin_token_file: Path | None = Field(None, description="read the admin token from this file")
    cache_dir: Path = Field(default_factory=_default_cache_dir, description="where exported graphs live")
    export_args: str = Field("", description="extra arguments for segformer-export when exporting")
    max_model_bytes: int = Field(
        512 * MiB, gt=0, description="largest .onnx a load opens (larger: the load fails)"
    )

    @field_validator("model", mode="before")
    @classmethod
    def _split_models(cls, value: Any) -> Any:
        """``SEGFORMER_MODEL=a=x.onnx,b=y.onnx`` (environment) or one flag per model."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def model_sources(self) -> list[str]:
        """The ``--model`` entries, or the default hub id when neither models nor a repository are set."""
        if self.model or self.model_repository is not None:
            return list(self.model)
        return [DEFAULT_MODEL]

    def admin_secret(self) -> str | None:
        """The admin bearer token (``--admin-token`` or the first line of ``--admin-token-file``)."""
        if self.admin_token_file is not None:
            return self.admin_token_file.read_text().strip() or None
        return self.admin_token.get_secret_value() if self.admin_token else None


class NetworkSettings(BaseModel):
    """Listening: ports, message and header limits, timeouts of a connection, the docs."""

    host: str = Field("0.0.0.0", description="REST (and gRPC) bind address")
    port: int = Field(8000, ge=0, le=65535, description="REST port")
    grpc_port: int = Field(50051, ge=0, le=65535, description="gRPC port, 0 disables gRPC")
    grpc_max_message_bytes: int = Field(64 * MiB, gt=0, description="gRPC max message size (both ways)")
    stream_max_inflight: int = Field(8, gt=0, description="frames in flight per gRPC stream")
    max_header_bytes: int = Field(
        64 * 1024, ge=1024, description="largest HTTP request line + headers (431 beyond)"
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="time to send the request line and headers (408, closed, beyond)"
    )
    body_timeout_s: float = Field(120.0, gt=0, description="time to send a whole request body (408 beyond)")
    body_idle_timeout_s: float = Field(
        10.0, gt=0, description="longest pause between two pieces of a request body (408 beyond)"
    )
    keep_alive_timeout_s: float = Field(5.0, gt=0, description="idle keep-alive connections close after")
    docs: bool = Field(True, description="serve the OpenAPI docs (/docs: Swagger UI, offline; /openapi.json)")


class RuntimeSettings(BaseModel):
    """What runs the network: device, runtime, precision, sessions and threads (``server.runtimes``)."""

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="execution provider choice")
    device_id: int = Field(0, ge=0, description="CUDA device index")
    sessions: int = Field(
        0,
        ge=0,
        description="ONNX Runtime sessions run side by side; 0 = auto: 1 on CUDA, on CPU 2 "
        "plus a solo all-core session for a request that has the server to itself",
    )
    intra_op_threads: int = Field(0, ge=0, description="threads per session, 0 = cores / sessions")
    runtime: Literal["auto", "onnxruntime", "openvino"] = Field(
        "auto",
        description="inference runtime (per model: NAME@RUNTIME=SOURCE); auto = OpenVINO on a CPU with "
        "AVX-512 when the openvino extra is installed, else ONNX Runtime (always ONNX Runtime on CUDA)",
    )
    precision: Literal["auto", "fp32", "mixed", "bf16", "fp16"] = Field(
        "auto",
        description="inference precision (per model: NAME@PRECISION=SOURCE); auto = the graph's own (fp32: "
        "the reference's masks); OpenVINO only: mixed = stages 1-3 in bf16, stage 4 and the decode head in "
        "fp32 (segformer-export graphs), bf16, fp16 (faster, masks measured in docs/openvino.md)",
    )
    openvino_static_shapes: int = Field(
        4,
        ge=0,
        description="OpenVINO: image shapes (height x width, at most the inference size's pixels) that get "
        "their own static-shape compilation (about twice as fast as the dynamic one; ~0.4 s to compile "
        "and its own activation memory each): the inference size at load, others in the background on "
        "their second request, least recently used dropped; 0 = dynamic shapes only",
    )
    cudnn_conv_algo_search: Literal["HEURISTIC", "EXHAUSTIVE", "DEFAULT"] = Field(
        "HEURISTIC", description="CUDA EP cuDNN convolution algorithm search"
    )
    gpu_mem_limit_mib: int = Field(0, ge=0, description="CUDA arena limit in MiB, 0 = unlimited")
    warmup_runs: int = Field(1, ge=0, description="warm-up inferences per session before ready")


class BatchingSettings(BaseModel):
    """The batcher and the deadlines (``server.runtimes.batcher``)."""

    max_batch_size: int = Field(
        0, ge=0, description="largest batch the batcher forms; 0 = auto: 8 on CUDA, 1 on CPU"
    )
    max_queue_delay_ms: float = Field(5.0, ge=0, description="how long a batch waits to fill")
    max_queue_size: int = Field(64, ge=1, description="requests waiting for a session; beyond: 503")
    request_timeout_ms: float = Field(30000.0, gt=0, description="default per-request deadline")
    max_request_timeout_ms: float = Field(
        300_000.0, gt=0, description="longest deadline a request may ask for (larger ones are clamped)"
    )


class InferenceSettings(BaseModel):
    """How an image is segmented: modes, windows, decoding, the overlay."""

    mode: Literal["resize", "native", "slide"] = Field("resize", description="default inference mode")
    slide_crop: int = Field(
        0, ge=0, description="slide mode: window side (pixels), 0 = the model's inference size"
    )
    slide_stride: int = Field(0, ge=0, description="slide mode: window step (pixels), 0 = 3/4 of the crop")
    slide_max_windows: int = Field(128, gt=0, description="slide mode: most windows per image (413 beyond)")
    native_max_side: int = Field(1024, ge=32, description="native mode: longest side cap (pixels)")
    jpeg_draft: bool = Field(
        False,
        description="resize mode: decode JPEGs at the smallest DCT scale (1/2, 1/4, 1/8) that still covers "
        "the inference size (a 12 Mpx photo: ~3x faster to decode into 1/16 of the pixels; masks 99.2-99.9 % "
        "equal to a full decode's, so not the default; docs/server.md)",
    )
    overlay_alpha: float = Field(0.5, ge=0, le=1, description="mask opacity for format=overlay")


class LimitSettings(BaseModel):
    """What a request may cost: body, image and memory limits."""

    max_body_bytes: int = Field(32 * MiB, gt=0, description="largest request body (413 beyond)")
    max_image_pixels: int = Field(40_000_000, gt=0, description="largest decoded image (pixels)")
    max_image_side: int = Field(16384, gt=0, description="longest image side (pixels)")
    memory_budget_mib: int = Field(
        2048,
        ge=0,
        description="working memory of the requests in flight (decoded pixels, masks), estimated from "
        "the image header before decoding; beyond it requests wait, then 503; 0 = unlimited",
    )
    image_cache_mib: int = Field(
        128,
        ge=0,
        description="freed image memory Pillow keeps for the next decode (in 16 MiB blocks), and as much "
        "again for full-size masks and OpenVINO's logits (server/recycle.py), given back when the server "
        "goes idle: no page faults on reuse (a 12 Mpx photo's decode + resize 99 -> 70 ms, its mask 7 "
        "-> 0.2 ms); 0 = off",
    )


class OperationSettings(BaseModel):
    """Running the process: the demo page, logs, traces, shutdown."""

    demo: bool = Field(True, description="serve the browser demo page at /demo/ (/ redirects there)")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    log_format: Literal["text", "json"] = Field(
        "text", description="log lines as text, or JSON with trace, span and request ids (docs/tracing.md)"
    )
    trace_endpoint: str | None = Field(
        None,
        description="send OpenTelemetry traces to this OTLP endpoint (else OTEL_EXPORTER_OTLP_ENDPOINT; "
        "neither: tracing off)",
    )
    trace_protocol: Literal["http/protobuf", "grpc"] | None = Field(
        None, description="OTLP protocol (else OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf)"
    )
    graceful_timeout_s: float = Field(30.0, gt=0, description="SIGTERM: time to finish in-flight work")
    drain_delay_s: float = Field(
        0.0,
        ge=0,
        description="SIGTERM: keep listening and serving this long with readiness 503 before closing",
    )


class Settings(
    OperationSettings,
    LimitSettings,
    InferenceSettings,
    BatchingSettings,
    RuntimeSettings,
    NetworkSettings,
    ModelSettings,
    BaseSettings,
):
    """Server settings, grouped by concern (the classes above; flags and environment are flat: flag
    ``--field-name``, environment ``SEGFORMER_FIELD_NAME``, read as ``settings.field_name``)."""

    model_config = SettingsConfigDict(env_prefix="SEGFORMER_", extra="forbid", protected_namespaces=())


def usable_cores() -> int:
    """CPU cores this process may use: affinity mask, capped by a cgroup v2 CPU quota (containers)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores
