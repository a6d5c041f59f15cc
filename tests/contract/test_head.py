"""``contract.head.split``: the batched stage + the per-image head in tiles give the graph's own mask."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from contract.head import split
from server.head import MaskHead, tile_rows

CPU = ["CPUExecutionProvider"]
SIZES = [(683, 512), (333, 517), (37, 1021)]


def _session(model: onnx.ModelProto | str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    data = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(data, options, providers=CPU)


@pytest.fixture(scope="module")
def graphs(random_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from export.api import export_onnx

    folder = tmp_path_factory.mktemp("split")
    full = export_onnx("random:b0", folder / "full.onnx", upsample="full", verify_graph=False)
    fp16 = export_onnx("random:b0", folder / "fp16.onnx", fp16=True, verify_graph=False)
    return {"topk": random_b0_onnx, "full": full, "fp16": fp16}


@pytest.mark.parametrize("kind", ["topk", "full", "fp16"])
def test_body_and_tiled_head_equal_the_graph(graphs: dict[str, Path], kind: str) -> None:
    model = onnx.load(str(graphs[kind]))
    parts = split(model)
    assert parts.mode == ("full" if kind == "full" else "topk") and parts.num_labels == 150
    assert [i.name for i in parts.body.graph.input] == ["image"]  # no output_size: one key per shape
    whole, body = _session(str(graphs[kind])), _session(parts.body)
    head = MaskHead(parts.head, CPU, np.dtype(np.uint8))
    images = np.random.default_rng(0).integers(0, 256, (2, 128, 160, 3), dtype=np.uint8)
    (logits,) = body.run(None, {"image": images})
    assert logits.dtype == np.float32 and logits.shape == (2, 150, 32, 40)
    for size in SIZES:
        (expected,) = whole.run(["mask"], {"image": images, "output_size": np.array(size)})
        for index in range(2):
            got = head.run(logits[index], size, tile_pixels=40_000)  # many bands
            assert got.shape == size and got.dtype == np.uint8
            # top-K: the same nodes, exactly; full: separable arithmetic vs Resize, float ties aside
            floor = 0.9999 if kind == "full" else 1.0
            assert np.mean(got == expected[index]) >= floor, (kind, size, index)


def test_tiles_cover_every_row_once() -> None:
    assert tile_rows(10, 10, tile_pixels=30) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    for height, width, pixels in [(6000, 6000, 1 << 20), (1, 16384, 1 << 20), (512, 683, 1 << 20), (7, 3, 2)]:
        bands = tile_rows(height, width, pixels)
        assert bands[0][0] == 0 and bands[-1][1] == height
        assert all(a[1] == b[0] for a, b in itertools.pairwise(bands))
        assert all((end - start) * width <= max(pixels, width) for start, end in bands)


def test_split_refuses_a_graph_without_logits() -> None:
    graph = onnx.helper.make_graph([], "empty", [], [])
    with pytest.raises(ValueError, match="no 'logits'"):
        split(onnx.helper.make_model(graph))
