"""``contract.head.split`` + ``server.head.MaskHead``: the batched stage and the per-image head give the
graph's own mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from contract.head import STAGE_CUT, cut, split
from server.head import PARALLEL_PIXELS, MaskHead, axis_weights

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
    assert parts.mode == ("full" if kind == "full" else "topk") and parts.topk == 3
    assert [i.name for i in parts.body.graph.input] == ["image"]  # no output_size: one key per shape
    whole, body = _session(str(graphs[kind])), _session(parts.body)
    head = MaskHead(parts.mode, parts.topk, np.dtype(np.uint8))
    images = np.random.default_rng(0).integers(0, 256, (2, 128, 160, 3), dtype=np.uint8)
    (logits,) = body.run(None, {"image": images})
    assert logits.dtype == np.float32 and logits.shape == (2, 150, 32, 40)
    for size in SIZES:
        (expected,) = whole.run(["mask"], {"image": images, "output_size": np.array(size)})
        for index in range(2):
            got = head.run(logits[index], size)
            assert got.shape == size and got.dtype == np.uint8
            # top-K: the same nodes, exactly; full: separable arithmetic vs Resize, float ties aside
            floor = 0.9999 if kind == "full" else 1.0
            assert np.mean(got == expected[index]) >= floor, (kind, size, index)


def test_smooth_logits_take_the_uniform_path_and_stay_exact() -> None:
    """Real-looking logits (large regions, few boundary cells) and random ones (every cell mixed) give
    the reference: every class upsampled with torch's arithmetic, then the argmax."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:24, 0:40].astype(np.float32)
    smooth = np.stack([np.sin(y / (3 + c) + c) + np.cos(x / (4 + c)) for c in range(7)]).astype(np.float32)
    noisy = rng.standard_normal((7, 24, 40), dtype=np.float32)
    for logits in (smooth, noisy):
        for size in [(24, 40), (97, 161), (13, 9), (1, 1), (300, 17)]:
            (y0, y1, wy0, wy1), (x0, x1, wx0, wx1) = axis_weights(24, size[0]), axis_weights(40, size[1])
            columns = logits[:, :, x0] * wx0 + logits[:, :, x1] * wx1
            expected = (columns[:, y0] * wy0[:, None] + columns[:, y1] * wy1[:, None]).argmax(axis=0)
            for head in (MaskHead("full", 0, np.dtype(np.uint8)), MaskHead("topk", 7, np.dtype(np.uint16))):
                got = head.run(logits, size)
                assert got.shape == size and got.dtype == head.mask_dtype
                assert np.array_equal(got, expected), (size, head.mode)


def test_axis_weights_follow_torch() -> None:
    torch = pytest.importorskip("torch")
    for in_size, out_size in [(128, 683), (128, 37), (32, 32), (5, 16384)]:
        grid = torch.arange(in_size, dtype=torch.float32).reshape(1, 1, 1, -1)
        expected = torch.nn.functional.interpolate(grid, size=(1, out_size), mode="bilinear").numpy()
        i0, i1, l0, l1 = axis_weights(in_size, out_size)
        np.testing.assert_allclose(i0 * l0 + i1 * l1, expected.reshape(-1), rtol=0, atol=1e-4)


def test_split_refuses_a_graph_without_logits() -> None:
    graph = onnx.helper.make_graph([], "empty", [], [])
    with pytest.raises(ValueError, match="no 'logits'"):
        split(onnx.helper.make_model(graph))


def test_cut_at_the_stages_gives_two_parts_equal_to_the_body(random_b0_onnx: Path) -> None:
    body = split(onnx.load(str(random_b0_onnx))).body
    parts = cut(body, STAGE_CUT)
    assert parts is not None
    front, back = parts
    assert [o.name for o in front.graph.output] == list(STAGE_CUT)
    assert [i.name for i in back.graph.input] == list(STAGE_CUT)
    images = np.random.default_rng(0).integers(0, 256, (2, 128, 160, 3), dtype=np.uint8)
    (expected,) = _session(body).run(None, {"image": images})
    features = _session(front).run(None, {"image": images})
    (got,) = _session(back).run(None, dict(zip(STAGE_CUT, features, strict=True)))
    np.testing.assert_array_equal(got, expected)
    assert cut(body, ("no-such-tensor",)) is None
    # the back part would need the image too: not a cut
    assert cut(body, STAGE_CUT[1:]) is None


def _reference_mask(logits: np.ndarray, size: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    """Every class upsampled with torch's arithmetic (x first, then y), one class at a time, the argmax
    over the running maximum (first class on ties): the full-size reference without a [C, H, W] array."""
    (y0, y1, wy0, wy1), (x0, x1, wx0, wx1) = (
        axis_weights(logits.shape[1], size[0]),
        axis_weights(logits.shape[2], size[1]),
    )
    best, labels = np.full(size, -np.inf, np.float32), np.zeros(size, dtype)
    for c, plane in enumerate(logits):
        columns = plane[:, x0] * wx0 + plane[:, x1] * wx1
        value = columns[y0] * wy0[:, None] + columns[y1] * wy1[:, None]
        higher = value > best
        np.copyto(best, value, where=higher)
        labels[higher] = c
    return labels


def test_banded_parallel_head_at_12_mpx_equals_the_reference() -> None:
    """A phone photo's mask (4032x3024, above ``PARALLEL_PIXELS``): bands on the thread pool, mixed
    cells with 2..C surviving candidates (smooth regions, a noisy patch, near-ties), and both modes."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:96, 0:128].astype(np.float32)
    logits = np.stack([np.sin(y / (5 + c) + c) + np.cos(x / (7 + c)) for c in range(6)]).astype(np.float32)
    logits[:, 30:50, 60:90] += rng.standard_normal((6, 20, 30), dtype=np.float32)  # every cell mixed
    logits[1, 70:80] = logits[0, 70:80] + np.float32(1e-6)  # near-ties: pruning must keep both
    size = (3024, 4032)
    assert size[0] * size[1] >= PARALLEL_PIXELS
    for head in (
        MaskHead("topk", 6, np.dtype(np.uint8), concurrency=2),
        MaskHead("full", 0, np.dtype(np.uint16), concurrency=3),
    ):
        try:
            got = head.run(logits, size)
            assert got.shape == size and got.dtype == head.mask_dtype
            assert np.array_equal(got, _reference_mask(logits, size, head.mask_dtype)), head.mode
            alone = MaskHead(head.mode, head.topk, head.mask_dtype)  # one band on the caller's thread
            assert np.array_equal(alone.run(logits, size), got)
        finally:
            head.close()


def test_nan_logits_give_a_mask_not_an_error() -> None:
    """NaN logits (a reduced precision's overflow) keep no candidate by comparison: slot 0 stands in."""
    logits = np.random.default_rng(0).standard_normal((5, 8, 8)).astype(np.float32)
    logits[:, 2:4, 2:4] = np.nan
    for head in (MaskHead("full", 0, np.dtype(np.uint8)), MaskHead("topk", 3, np.dtype(np.uint8))):
        assert head.run(logits, (40, 40)).shape == (40, 40)
