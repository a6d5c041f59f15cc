"""The Open Inference Protocol's operations over the data plane, for both transports.

``infer`` sends every element of the request to ``DataPlane.segment`` at once (so they batch with each
other and with every other request), then encodes the requested outputs off the event loop. Metadata and
the Triton model configuration are plain dicts: REST answers them as JSON, gRPC parses them into protos.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

from server import errors, tracing
from server.errors import ServeError
from server.outputs.formats import keep
from server.settings import Settings
from server.types import SegmentRequest
from server.v2 import models, tensors
from server.v2.tensors import InferRequest, OutputTensor, RequestedOutput

SERVER_NAME = "segformer-serve"
EXTENSIONS = ["binary_tensor_data", "model_configuration"]
#: Triton's platform/backend names by the runtime that serves a model
PLATFORMS = {"onnxruntime": ("onnxruntime_onnx", "onnxruntime"), "openvino": ("openvino", "openvino")}
CONFIG_TYPES = {"BYTES": "TYPE_STRING", "UINT8": "TYPE_UINT8", "UINT16": "TYPE_UINT16"}


@dataclass
class InferResult:
    model: str
    version: str
    id: str
    outputs: list[OutputTensor]
    requested: list[RequestedOutput]


def server_version() -> str:
    try:
        return version(SERVER_NAME)
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0"


def _mask_datatype(description: Any) -> str:
    return "UINT16" if "16" in str(description.mask_dtype) else "UINT8"


def _tensor_specs(description: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    inputs = [{"name": n, "datatype": t, "shape": s} for n, (t, s) in tensors.INPUTS.items()]
    # the default outputs only: perf_analyzer asks for every listed output, and `probability` needs a
    # `classes` parameter; the registry's other formats are asked for by name (docs/v2.md)
    outputs = [{"name": n, "datatype": t, "shape": s} for n, (t, s) in tensors.OUTPUTS.items()]
    outputs = [o for o in outputs if o["name"] in tensors.DEFAULT_OUTPUTS]
    outputs[0]["datatype"] = _mask_datatype(description)
    return inputs, outputs


class V2Service:
    def __init__(self, dataplane: Any, settings: Settings) -> None:
        self.plane = dataplane
        self.settings = settings

    def server_ready(self) -> bool:
        return bool(self.plane.is_ready(None))

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": server_version(), "extensions": EXTENSIONS}

    def model_ready(self, name: str, version: str = "") -> bool:
        return models.is_ready(self.plane, name, version)

    def model_metadata(self, name: str, version: str = "") -> dict[str, Any]:
        name, served = models.resolve(self.plane, name, version)
        description = self.plane.describe(name)
        inputs, outputs = _tensor_specs(description)
        return {
            "name": name,
            "versions": [str(served)],
            "platform": PLATFORMS[description.runtime][0],
            "inputs": inputs,
            "outputs": outputs,
        }

    def model_config(self, name: str, version: str = "") -> dict[str, Any]:
        """Triton's model configuration (its JSON form): what perf_analyzer and tritonclient read."""
        name, _ = models.resolve(self.plane, name, version)
        d = self.plane.describe(name)
        inputs, outputs = _tensor_specs(d)
        on_gpu = any("CUDA" in p or "Tensorrt" in p for p in d.providers)
        return {
            "name": name,
            "platform": PLATFORMS[d.runtime][0],
            "backend": PLATFORMS[d.runtime][1],
            "max_batch_size": 0,  # shapes carry their own N; the server batches elements itself
            "input": [
                {
                    "name": t["name"],
                    "data_type": CONFIG_TYPES[t["datatype"]],
                    "format": "FORMAT_NHWC" if t["name"] == "pixels" else "FORMAT_NONE",
                    "dims": t["shape"],
                    "optional": True,  # exactly one of the two
                }
                for t in inputs
            ],
            "output": [
                {"name": t["name"], "data_type": CONFIG_TYPES[t["datatype"]], "dims": t["shape"]}
                for t in outputs
            ],
            "instance_group": [
                {"name": name, "kind": "KIND_GPU" if on_gpu else "KIND_CPU", "count": d.batching.sessions}
            ],
        }

    async def infer(
        self, request: InferRequest, transport: str, endpoint: str, deadline: float | None = None
    ) -> InferResult:
        """Run a request; raises ``ServeError`` (transports render it)."""
        start = time.monotonic()
        name, served = models.resolve(self.plane, request.model, request.version)
        images = tensors.images(request.inputs)
        if len(images) > self.settings.max_queue_size:  # could never be admitted at once: not a 503
            raise errors.invalid_argument(
                f"the request has {len(images)} elements; at most {self.settings.max_queue_size} "
                "(--max-queue-size) are taken in one request"
            )
        requested = tensors.check_outputs(request.outputs)
        chosen = tensors.output_options(request.parameters, self.settings.overlay_alpha)
        kept = keep(tensors.formats(requested, chosen))
        deadline = _deadline(request.parameters, deadline, start)
        mode = request.parameters.get("mode")
        if mode is not None and not isinstance(mode, str):
            got = errors.shown(repr(mode))
            raise errors.invalid_argument(f"parameter 'mode' is a string (resize or native), got {got}")
        common = {"model": name, "mode": mode, "deadline": deadline}
        common |= {"transport": transport, "endpoint": endpoint, **kept}
        if isinstance(images, np.ndarray):
            calls = [SegmentRequest(pixels=p, **common) for p in images]
        else:
            calls = [SegmentRequest(image=i, **common) for i in images]
        results = await _all([self.plane.segment(c) for c in calls])
        encoding = time.monotonic()
        outputs = await asyncio.to_thread(tensors.build_outputs, results, requested, chosen)
        tracing.stage("encode", time.monotonic() - encoding)
        return InferResult(name, str(served), request.id, outputs, requested)


def _deadline(parameters: dict[str, Any], deadline: float | None, now: float) -> float | None:
    """The earliest of the transport's deadline and the request's ``timeout`` parameter (microseconds)."""
    timeout = parameters.get("timeout")
    if timeout is None:
        return deadline
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < math.inf:
        raise errors.invalid_argument(
            f"parameter 'timeout' is a positive number of microseconds, got {errors.shown(repr(timeout))}"
        )
    mine = now + timeout / 1e6
    return mine if deadline is None else min(deadline, mine)


def _failed_with(task: asyncio.Future[Any], err: BaseException) -> bool:
    return task.done() and not task.cancelled() and task.exception() is err


async def _all(calls: list[Coroutine[Any, Any, Any]]) -> list[Any]:
    """Await every call concurrently; on the first failure cancel the rest and raise it (named by element)."""
    tasks = [asyncio.ensure_future(c) for c in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except ServeError as err:
        if len(tasks) == 1:
            raise
        index = next(i for i, t in enumerate(tasks) if _failed_with(t, err))
        raise ServeError(err.status, err.error, f"element {index}: {err.detail}", err.retry_after) from None
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
