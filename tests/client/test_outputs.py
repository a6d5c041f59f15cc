"""``segformer-client --format``: the server's formats over REST and gRPC, the same bytes both ways, and
the server's refusals in words."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from client import SegformerClient, SegmentationError
from client.cli import main
from client.outputs import OutputRequest
from tests.grpc.serving import LiveServer, decode_mask, encode, scene


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        (folder / f"scene_{i}.png").write_bytes(encode(scene(96, 128, seed=700 + i), "PNG"))
    return folder


def test_cli_format_writes_each_format_alike_over_rest_and_grpc(
    live: LiveServer, images: Path, tmp_path: Path
) -> None:
    for name, suffix in (("polygons", ".geojson"), ("rle", ".rle.json"), ("raw", ".raw")):
        rest, grpc_out = tmp_path / f"rest-{name}", tmp_path / f"grpc-{name}"
        assert main(["--url", live.rest_url, "--format", name, "-q", str(images), "-o", str(rest)]) == 0
        url = f"grpc://{live.grpc_address}"
        assert main(["--url", url, "--format", name, "-q", str(images), "-o", str(grpc_out)]) == 0
        for image in sorted(images.iterdir()):
            written = (rest / f"{image.stem}{suffix}").read_bytes()
            assert written == (grpc_out / f"{image.stem}{suffix}").read_bytes()
            if name == "polygons":
                assert json.loads(written)["type"] == "FeatureCollection"


def test_library_output_fields_and_class_filter(live: LiveServer, images: Path) -> None:
    image = sorted(images.iterdir())[0]
    for url in (live.rest_url, f"grpc://{live.grpc_address}"):
        with SegformerClient(url) as client:
            mask = client.segment(image).mask()
            keep = str(int(np.unique(mask)[0]))
            raw = client.output(image, OutputRequest("raw", (keep,)))
            height, width = (int(v) for v in raw.fields["shape"].split(","))
            pixels = np.frombuffer(raw.data, raw.fields["dtype"]).reshape(height, width)
            assert np.array_equal(pixels, np.where(mask == int(keep), mask, 255))
            assert raw.fields["background"] == "255" and raw.fields["classes"] == keep
            confidence = client.output(image, OutputRequest("confidence"))
            assert confidence.suffix == ".png" and decode_mask(confidence.data).shape == mask.shape


def test_bad_formats_and_parameters_are_the_servers_words(
    live: LiveServer, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for url in (live.rest_url, f"grpc://{live.grpc_address}"):
        with SegformerClient(url) as client:
            image = sorted(images.iterdir())[0]
            for request, words in [
                (OutputRequest("tiff"), "unknown format 'tiff'; the formats are png"),
                (OutputRequest("rle", ("lava",)), "unknown class 'lava'"),
                (OutputRequest("polygons", tolerance=-2.0), "tolerance is a number of pixels >= 0"),
            ]:
                with pytest.raises(SegmentationError, match=words) as info:
                    client.output(image, request)
                assert info.value.code in ("400", "INVALID_ARGUMENT")
    assert main(["--url", live.rest_url, "--format", "tiff", str(images), "-o", str(tmp_path / "x")]) == 1
    assert "unknown format 'tiff'" in capsys.readouterr().err
