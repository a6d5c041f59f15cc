"""``inference.GRPCInferenceService``: the Open Inference Protocol over gRPC (with Triton's ModelConfig
and ModelStreamInfer), translating protos to ``server.v2`` and back; the work is ``V2Service``'s.

Outputs go in ``raw_output_contents`` (what tritonclient reads). Handlers raise ``ServeError``; the
interceptor (``server/grpc/interceptor.py``) maps it through the one status table and does the metrics,
tracing and access log; each stream request is a request of its own (``Bookkeeping.frame``) and a
failed one gets ``error_message`` while the stream goes on. Streams are
``server.grpc.streams.OrderedStream``, as v1's: at most ``stream_max_inflight`` requests in the data
plane, answered in order, back-pressure while the model's queue is full, UNAVAILABLE after a drain.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from google.protobuf import json_format

from server import errors
from server.errors import ServeError
from server.grpc.gen import grpc_service_pb2 as pb
from server.grpc.gen import grpc_service_pb2_grpc as pb_grpc
from server.grpc.interceptor import Bookkeeping
from server.grpc.streams import OrderedStream, admitted
from server.settings import Settings
from server.v2 import tensors
from server.v2.service import InferResult, V2Service

log = logging.getLogger("segformer.grpc")
TRANSPORT = "grpc"
METHOD = "/inference.GRPCInferenceService/"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


def parameters(entries: Any) -> dict[str, Any]:
    """A ``map<string, InferParameter>`` as plain values."""
    values = {}
    for key, param in entries.items():
        which = param.WhichOneof("parameter_choice")
        values[key] = getattr(param, which) if which else None
    return values


def infer_request(request: pb.ModelInferRequest) -> tensors.InferRequest:
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise errors.invalid_argument(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs"
        )
    converted = tensors.InferRequest(
        request.model_name, request.model_version, request.id, parameters=parameters(request.parameters)
    )
    for index, item in enumerate(request.inputs):
        tensor = tensors.InputTensor(item.name, item.datatype, list(item.shape))
        if raw:
            tensor.raw = raw[index]
        elif item.datatype == tensors.BYTES:
            tensor.elements = list(item.contents.bytes_contents)
        else:
            tensor.array = np.asarray(item.contents.uint_contents, dtype=np.int64)
        converted.inputs.append(tensor)
    converted.outputs = [tensors.RequestedOutput(o.name) for o in request.outputs]
    return converted


def infer_response(result: InferResult) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=result.model, model_version=result.version, id=result.id)
    for tensor in result.outputs:
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        response.raw_output_contents.append(tensor.raw)
    return response


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, dataplane: Any, settings: Settings, bookkeeping: Bookkeeping) -> None:
        self._service = V2Service(dataplane, settings)
        self._bookkeeping = bookkeeping
        self._dataplane = dataplane
        self._inflight = settings.stream_max_inflight
        self._default_timeout_s = settings.request_timeout_ms / 1000

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._service.server_ready())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self._service.model_ready(request.name, request.version))

    async def ServerMetadata(self, request: Any, context: Any) -> pb.ServerMetadataResponse:
        return json_format.ParseDict(self._service.server_metadata(), pb.ServerMetadataResponse())

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        body = self._service.model_metadata(request.name, request.version)
        return json_format.ParseDict(body, pb.ModelMetadataResponse())

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Any) -> pb.ModelConfigResponse:
        body = self._service.model_config(request.name, request.version)
        return json_format.ParseDict({"config": body}, pb.ModelConfigResponse())

    async def _infer(self, request: pb.ModelInferRequest, time_remaining: float | None, name: str) -> Any:
        deadline = time.monotonic() + time_remaining if time_remaining is not None else None
        result = await self._service.infer(infer_request(request), TRANSPORT, METHOD + name, deadline)
        return await asyncio.to_thread(infer_response, result)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        return await self._infer(request, context.time_remaining(), "ModelInfer")

    def _stream_deadline(self, remaining: float | None) -> float:
        return time.monotonic() + (self._default_timeout_s if remaining is None else remaining)

    async def _stream_one(self, request: pb.ModelInferRequest, remaining: float | None) -> Any:
        """One stream request: a response either way (errors in ``error_message``); raises only cancel.
        Shed for a full queue, it waits for room and tries again until its deadline (``admitted``)."""
        work = functools.partial(self._infer, request, remaining, "ModelStreamInfer")
        deadline = self._stream_deadline(remaining)
        admit = functools.partial(admitted, self._dataplane, request.model_name or None, deadline, work)
        try:
            response = await self._bookkeeping.frame(METHOD + "ModelStreamInfer", request, admit)
        except ServeError as failure:
            echo = pb.ModelInferResponse(
                model_name=request.model_name, model_version=request.model_version, id=request.id
            )
            return pb.ModelStreamInferResponse(error_message=failure.detail, infer_response=echo)
        return pb.ModelStreamInferResponse(infer_response=response)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: Any
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        stream = OrderedStream(
            request_iterator,
            lambda request: self._stream_one(request, context.time_remaining()),
            model=lambda request: request.model_name or None,
            deadline=lambda request: self._stream_deadline(context.time_remaining()),
            dataplane=self._dataplane,
            inflight=self._inflight,
        )
        async for response in stream.respond(context):
            yield response
