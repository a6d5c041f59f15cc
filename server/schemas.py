"""What the server says about its models (REST ``/v1/models...`` bodies, gRPC ``GetModel`` details)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from server.types import Mode

State = Literal["loading", "ready", "unloading", "failed"]


class ModelClass(BaseModel):
    id: int
    label: str
    color: tuple[int, int, int]


class Batching(BaseModel):
    max_batch_size: int
    max_queue_delay_ms: float
    max_queue_size: int
    sessions: int  # run side by side
    intra_op_threads: int  # each
    solo_session_threads: int  # 0: none; else the all-core session a lone request runs on


class ModelStatus(BaseModel):
    """A model's place in the repository (``GET /v1/models``)."""

    name: str
    state: State = Field(description="loading (no version serves yet), ready, unloading, failed")
    default: bool = Field(description="served by /v1/segment and requests that name no model")
    version: int = Field(description="1 for the first load, +1 for each successful reload; 0 before")
    source_sha256: str = Field(description="sha256 of the served weights (of the graph for .onnx sources)")
    error: str | None = Field(None, description="why the last load failed (the old version, if any, serves)")
    reloading: bool = Field(False, description="a new version is being loaded beside the serving one")


class ModelDescription(BaseModel):
    """One served model version (``GET /v1/models/{name}``, ``GET /v1/model``)."""

    name: str
    version: int
    state: State
    graph_name: str = Field(description="the name in the graph's metadata")
    variant: str
    num_labels: int
    classes: list[ModelClass]
    inference_size: tuple[int, int]  # (height, width)
    mode: Mode
    modes: list[Mode]
    native_max_side: int
    mask_dtype: str
    precision: str = Field(description="the graph's precision")
    runtime: str = Field(description="onnxruntime or openvino (docs/openvino.md)")
    inference_precision: str = Field(
        description="what the runtime computes in: fp32 | mixed (bf16 + fp32 stage 4 and head) | bf16 | fp16"
    )
    exact: bool = Field(
        description="the network runs in the graph's own precision (the reference's masks); false for a "
        "reduced precision chosen by flag or per model (its measured agreement: docs/openvino.md)"
    )
    providers: list[str]
    batching: Batching
    source_sha256: str
    foreign: bool
