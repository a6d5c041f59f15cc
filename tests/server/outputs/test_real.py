"""Every format on the real B0 ADE20K weights and real photos, against references computed here from the
transformers model's logits, and the same answers over REST, gRPC v1 and the Open Inference Protocol."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image

from server.grpc.gen import segmentation_pb2 as pb
from server.grpc.gen import segmentation_pb2_grpc as pb_grpc
from tests.grpc.serving import LiveServer
from tests.reference import ReferencePipeline, agreement
from tests.server.outputs.decoding import fill, iou, png_pixels, rle_decode

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]


@pytest.fixture(scope="module")
def reference(real_weights_dir: Path) -> ReferencePipeline:
    return ReferencePipeline.load(real_weights_dir)


@pytest.fixture(scope="module")
def live(real_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(real_b0_onnx, tmp_path_factory.mktemp("formats"), "--warmup-runs", "1")
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def rest(live: LiveServer, photo: bytes, **params: str) -> httpx.Response:
    answer = httpx.post(
        f"{live.rest_url}/v1/segment",
        params=params,
        content=photo,
        headers={"Content-Type": "image/jpeg"},
        timeout=300,
    )
    assert answer.status_code == 200, answer.text
    return answer


def reference_confidence(reference: ReferencePipeline, image: Image.Image) -> np.ndarray:
    """The documented definition on the transformers logits: softmax on the model's grid, its largest
    probability bilinearly upsampled (torch, align_corners=False) to the original size, x255, rounded."""
    import torch

    logits = torch.from_numpy(reference.logits(image))
    top = torch.softmax(logits, dim=1).max(dim=1, keepdim=True).values
    up = torch.nn.functional.interpolate(
        top, size=(image.height, image.width), mode="bilinear", align_corners=False
    )
    return torch.round(up[0, 0] * 255).clamp(0, 255).numpy().astype(np.int16)


def test_formats_match_the_reference_on_real_photos(
    live: LiveServer, reference: ReferencePipeline, real_photos: list[Path]
) -> None:
    for path in real_photos:
        photo = path.read_bytes()
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        mask = png_pixels(rest(live, photo).content)
        assert agreement(mask, reference.mask(image)) >= 0.999

        confidence = png_pixels(rest(live, photo, format="confidence").content).astype(np.int16)
        close = np.abs(confidence - reference_confidence(reference, image)) <= 2
        assert confidence.shape == mask.shape and close.mean() >= 0.999, (path.name, close.mean())

        raw = rest(live, photo, format="raw")
        shape = tuple(int(v) for v in raw.headers["X-Segformer-Shape"].split(","))
        assert np.array_equal(
            np.frombuffer(raw.content, raw.headers["X-Segformer-Dtype"]).reshape(shape), mask
        )

        rle = rest(live, photo, format="rle").json()
        assert [c["id"] for c in rle["classes"]] == sorted(np.unique(mask).tolist())
        for item in rle["classes"]:
            assert np.array_equal(rle_decode(item), mask == item["id"]), (path.name, item["id"])

        shapes = rest(live, photo, format="polygons", tolerance="0")
        assert shapes.headers["content-type"] == "application/geo+json"
        for feature in shapes.json()["features"]:
            class_id = feature["properties"]["id"]
            overlap = iou(fill(feature["geometry"], mask.shape), mask == class_id)
            assert overlap >= 0.98, (path.name, class_id, overlap)


def test_a_class_filter_leaves_only_those_classes(live: LiveServer, real_photos: list[Path]) -> None:
    photo = real_photos[0].read_bytes()
    mask = png_pixels(rest(live, photo).content)
    present = np.unique(mask)[:2].tolist()
    names = httpx.get(f"{live.rest_url}/v1/model", timeout=10).json()["classes"]
    labels = ",".join(names[c]["label"] for c in present)
    filtered = rest(live, photo, classes=labels)
    kept = png_pixels(filtered.content)
    assert filtered.headers["X-Segformer-Background"] == "255"
    assert np.array_equal(kept, np.where(np.isin(mask, present), mask, 255))
    rle = rest(live, photo, format="rle", classes=",".join(map(str, present))).json()
    assert [c["id"] for c in rle["classes"]] == present


def test_the_same_answers_over_rest_grpc_and_oip(live: LiveServer, real_photos: list[Path]) -> None:
    photo = real_photos[-1].read_bytes()
    model = httpx.get(f"{live.rest_url}/v1/model", timeout=10).json()["name"]
    stub = pb_grpc.SegmentationServiceStub(grpc.insecure_channel(live.grpc_address))
    triton = httpclient.InferenceServerClient(live.rest_url.removeprefix("http://"), network_timeout=600.0)
    image = httpclient.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([photo], dtype=object))
    names = ["rle", "polygons", "confidence", "probability"]
    by_oip = triton.infer(
        model,
        [image],
        outputs=[httpclient.InferRequestedOutput(n, binary_data=True) for n in [*names, "mask"]],
        parameters={"classes": "wall,sky,floor,tree,building,road", "tolerance": 1.5},
    )
    for name in names:
        by_rest = rest(live, photo, format=name, classes="wall,sky,floor,tree,building,road", tolerance="1.5")
        request = pb.SegmentRequest(
            image=photo,
            format=name,
            classes=["wall", "sky", "floor", "tree", "building", "road"],
            tolerance=1.5,
        )
        by_grpc = stub.Segment(request, timeout=300).output
        assert by_grpc.content_type == by_rest.headers["content-type"]
        oip = by_oip.as_numpy(name)[0]
        if name == "confidence":  # the logits of a lone image: equal, at most a rounding apart
            first, second, third = (png_pixels(b).astype(int) for b in (by_rest.content, by_grpc.data, oip))
            assert np.abs(first - second).max() <= 1 and np.abs(first - third).max() <= 1
        elif name == "probability":
            assert [c["id"] for c in json.loads(by_grpc.data)["classes"]] == [
                c["id"] for c in json.loads(oip)["classes"]
            ]
        else:
            assert by_rest.content == by_grpc.data == oip, name
    oip_grpc = grpcclient.InferenceServerClient(live.grpc_address)
    grpc_image = grpcclient.InferInput("image", [1], "BYTES")
    grpc_image.set_data_from_numpy(np.array([photo], dtype=object))
    by_oip_grpc = oip_grpc.infer(
        model,
        [grpc_image],
        outputs=[grpcclient.InferRequestedOutput("rle"), grpcclient.InferRequestedOutput("polygons")],
        parameters={"classes": "wall,sky,floor,tree,building,road", "tolerance": 1.5},
        client_timeout=300.0,
    )
    for name in ("rle", "polygons"):
        assert by_oip_grpc.as_numpy(name)[0] == by_oip.as_numpy(name)[0], name
    raw = stub.Segment(pb.SegmentRequest(image=photo, format="raw"), timeout=300).output
    shape = tuple(int(v) for v in raw.fields["shape"].split(","))
    mask = np.frombuffer(raw.data, raw.fields["dtype"]).reshape(shape)
    assert np.array_equal(mask, png_pixels(rest(live, photo).content))
    kept = np.where(np.isin(mask, [0, 1, 2, 3, 4, 6]), mask, 255)  # wall, sky, floor, tree, building, road
    assert np.array_equal(by_oip.as_numpy("mask")[0], kept)


def test_bad_parameters_are_refused_in_words_on_every_transport(
    live: LiveServer, real_photos: list[Path]
) -> None:
    photo = real_photos[0].read_bytes()
    url = f"{live.rest_url}/v1/segment"
    for params, words in [
        ({"format": "tiff"}, "unknown format 'tiff'"),
        ({"format": "polygons", "tolerance": "-1"}, "tolerance is a number of pixels >= 0"),
        ({"format": "rle", "classes": "lava"}, "unknown class 'lava'"),
        ({"format": "probability"}, "needs classes"),
        ({"format": "confidence", "mode": "slide"}, "confidence and probability need mode resize or native"),
    ]:
        answer = httpx.post(
            url, params=params, content=photo, headers={"Content-Type": "image/jpeg"}, timeout=300
        )
        assert answer.status_code == 400 and words in answer.json()["detail"], (params, answer.text)
    stub = pb_grpc.SegmentationServiceStub(grpc.insecure_channel(live.grpc_address))
    for request, words in [
        (pb.SegmentRequest(image=photo, format="tiff"), "unknown format 'tiff'"),
        (pb.SegmentRequest(image=photo, format="polygons", tolerance=-1), "tolerance is a number"),
        (pb.SegmentRequest(image=photo, format="rle", classes=["lava"]), "unknown class 'lava'"),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            stub.Segment(request, timeout=300)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in info.value.details()
    triton = httpclient.InferenceServerClient(live.rest_url.removeprefix("http://"), network_timeout=600.0)
    image = httpclient.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([photo], dtype=object))
    model = httpx.get(f"{live.rest_url}/v1/model", timeout=10).json()["name"]
    with pytest.raises(Exception, match="unknown class 'lava'"):
        triton.infer(
            model, [image], outputs=[httpclient.InferRequestedOutput("rle")], parameters={"classes": "lava"}
        )
