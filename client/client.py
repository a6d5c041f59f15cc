"""``SegformerClient``: one client for both transports, chosen by the URL scheme.

    with SegformerClient("grpc://127.0.0.1:50051") as client:     # or "http://127.0.0.1:8000" (REST)
        seg = client.segment(Path("street.jpg"))
        seg.mask()                        # numpy [H, W] uint8/uint16 label mask
        for seg in client.stream(frames):  # ordered; gRPC: one StreamSegment call
            ...

Imports neither torch nor the server: only httpx, grpcio, numpy, Pillow and the generated stubs.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client.answers import details, from_proto, http_error, resumable, rpc_error
from client.resume import ResumableFrames
from client.types import Ask, ClassInfo, Output, Segmentation, SegmentationError, content_type
from client.wire import has_field, segment_request
from server.grpc.gen import segmentation_pb2 as pb
from server.grpc.gen import segmentation_pb2_grpc as pb_grpc

Image = bytes | str | Path
MiB = 1024 * 1024
RECONNECT_BACKOFF_S = 0.05  # before a stream's first reconnect; doubles while no frame is answered


def _read(image: Image) -> bytes:
    return image if isinstance(image, bytes) else Path(image).read_bytes()


class SegformerClient:
    """A segformer-serve client: ``http(s)://host:port`` for REST, ``grpc://host:port`` for gRPC."""

    def __init__(self, url: str, *, timeout: float | None = 60.0, max_message_bytes: int = 64 * MiB) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        self.transport: Literal["rest", "grpc"] = "grpc" if parts.scheme == "grpc" else "rest"
        self.url, self.timeout = url, timeout
        self._http: httpx.Client | None = None
        self._channel: grpc.Channel | None = None
        if self.transport == "grpc":
            options = [
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
            ]
            self._channel = grpc.insecure_channel(parts.netloc, options=options)
            self._stub = pb_grpc.SegmentationServiceStub(self._channel)
        else:
            self._http = httpx.Client(base_url=f"{parts.scheme}://{parts.netloc}", timeout=timeout)

    def segment(
        self,
        image: Image,
        *,
        mode: str | None = None,
        mask_format: str = "png",
        model: str | None = None,
        output: str | Ask | None = None,
    ) -> Segmentation:
        """Segment one image; raises ``SegmentationError`` when the server refuses it.

        ``model``: a served model's name (REST ``/v1/models/{model}/segment``, gRPC
        ``SegmentRequest.model``); ``None``: the server's default model (``/v1/segment``). ``output``:
        a format of the server's (``polygons``, ``rle``...; REST ``format=``): the answer in ``.output``;
        an ``Ask`` adds the format's parameters (``classes``, ``tolerance``, ``min_area``).
        """
        ask = Ask.of(output)
        data = _read(image)
        if self._channel is not None:
            request = segment_request(data, 0, mode, mask_format, model, output)
            try:
                return from_proto(self._stub.Segment(request, timeout=self.timeout))
            except grpc.RpcError as exc:
                raise rpc_error(exc) from None
        assert self._http is not None
        params: dict[str, str] = {"format": ask.format or "json", **({"mode": mode} if mode else {})}
        for name, value in ask.parameters().items():
            params[name] = ",".join(value) if isinstance(value, list) else str(value)
        if self.timeout is not None:
            params["timeout_ms"] = str(self.timeout * 1000)  # the server drops it once we gave up
        headers = {"Content-Type": content_type(data), "Accept": "application/json"}
        try:
            path = f"/v1/models/{quote(model, safe='')}/segment" if model else "/v1/segment"
            response = self._http.post(path, content=data, params=params, headers=headers)
        except httpx.TransportError as exc:  # no answer at all: like gRPC's UNAVAILABLE (no error kind)
            raise SegmentationError("UNAVAILABLE", "", f"{type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise http_error(response)
        if ask.format:
            kind = response.headers.get("content-type", "application/octet-stream")
            fields = {
                k[len("x-segformer-") :]: v
                for k, v in response.headers.items()
                if k.startswith("x-segformer-")
            }
            return Segmentation(output=Output(ask.format, kind, response.content, fields))
        body: dict[str, Any] = response.json()
        return Segmentation(
            width=body["width"],
            height=body["height"],
            mask_data=base64.b64decode(body["mask_png_base64"]),
            classes=[ClassInfo(c["id"], c["label"], c["pixels"], c["fraction"]) for c in body["classes"]],
            timings={k: v / 1000 for k, v in (body.get("timings_ms") or {}).items()},
        )

    def stream(
        self,
        images: Iterable[Image],
        *,
        mode: str | None = None,
        mask_format: str = "png",
        inflight: int = 8,
        model: str | None = None,
        reconnects: int = 3,
        output: str | Ask | None = None,
    ) -> Generator[Segmentation, None, None]:
        """Segment frames in order: one result per frame (``.error`` set when that frame failed).

        gRPC: one ``StreamSegment`` call (the server bounds the frames in flight); when it ends with
        UNAVAILABLE (the server shuts down, the connection drops) a new call resends the frames not yet
        answered, up to ``reconnects`` times in a row without an answer in between. REST: ``inflight``
        concurrent requests. A failure of the whole call raises ``SegmentationError``.
        """
        if self._channel is None:
            yield from self._rest_stream(images, mode, inflight, model, output)
            return
        segment_request(b"", 0, mode, mask_format, model, output)  # a bad mode or model fails here
        frames = ResumableFrames(
            segment_request(_read(im), i, mode, mask_format, model, output) for i, im in enumerate(images)
        )
        failures = 0
        while True:
            call = self._stub.StreamSegment(frames.requests())
            try:
                for response in call:
                    frames.answered(response.frame_id)
                    failures = 0
                    yield from_proto(response)
                return
            except grpc.RpcError as exc:
                if not resumable(exc) or failures >= reconnects:
                    raise rpc_error(exc) from None
            finally:
                call.cancel()  # a no-op once done; ends the server's work if the caller stopped early
            time.sleep(RECONNECT_BACKOFF_S * 2**failures)
            failures += 1

    def _rest_stream(
        self,
        images: Iterable[Image],
        mode: str | None,
        inflight: int,
        model: str | None,
        output: str | Ask | None,
    ) -> Iterator[Segmentation]:
        def one(frame_id: int, image: Image) -> Segmentation:
            try:
                seg = self.segment(image, mode=mode, model=model, output=output)
            except SegmentationError as err:
                err.frame_id = frame_id
                return Segmentation(frame_id=frame_id, error=err)
            seg.frame_id = frame_id
            return seg

        with ThreadPoolExecutor(max_workers=inflight) as pool:
            window: list[Future[Segmentation]] = []
            for frame_id, image in enumerate(images):
                window.append(pool.submit(one, frame_id, image))
                if len(window) >= inflight:
                    yield window.pop(0).result()
            for future in window:
                yield future.result()

    def model(self, name: str | None = None) -> dict[str, Any]:
        """The served model: REST ``GET /v1/model`` body (gRPC: ``GetModel``'s ``details``).

        ``name``: that model (REST ``GET /v1/models/{name}``, gRPC ``GetModelRequest.name``).
        Raises ``SegmentationError`` when the server refuses (unknown model: 404 / NOT_FOUND).
        """
        if self._channel is not None:
            if name and not has_field(pb.GetModelRequest, "name"):
                raise SegmentationError(
                    "INVALID_ARGUMENT", "invalid_argument", "this segformer.v1 has no GetModelRequest.name"
                )
            request = pb.GetModelRequest(name=name) if name else pb.GetModelRequest()
            try:
                response = self._stub.GetModel(request, timeout=self.timeout)
            except grpc.RpcError as exc:
                raise rpc_error(exc) from None
            return details(response)
        assert self._http is not None
        try:
            response = self._http.get(f"/v1/models/{quote(name, safe='')}" if name else "/v1/model")
        except httpx.TransportError as exc:
            raise SegmentationError("UNAVAILABLE", "", f"{type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise http_error(response)
        return response.json()

    def ready(self) -> bool:
        """REST ``/readyz`` is 200, or gRPC health says SERVING."""
        if self._channel is not None:
            stub = health_pb2_grpc.HealthStub(self._channel)
            try:
                answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=self.timeout)
            except grpc.RpcError:
                return False
            return answer.status == health_pb2.HealthCheckResponse.SERVING
        assert self._http is not None
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> SegformerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
