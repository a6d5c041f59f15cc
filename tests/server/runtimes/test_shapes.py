"""Static-shape compilations beside the dynamic one (``server.runtimes.shapes``) and the ``mixed`` plan."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from server.runtimes.cpufeatures import cpu_flags, has_native_bf16
from server.settings import Settings
from server.source import resolve_model
from tests.server.test_foreign import tiny_foreign

pytest.importorskip("openvino", reason="the openvino extra is not installed")

from server.runtimes.openvino import OpenVinoPool

_NO_BF16 = pytest.mark.skipif(not has_native_bf16(cpu_flags()), reason="this CPU has no native bf16")
INFERENCE = (1, 512, 512, 3)


def _images(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)


def _wait_for(pool: OpenVinoPool, shape: tuple[int, ...]) -> None:
    deadline = time.monotonic() + 60
    while shape not in pool.shapes.shapes:
        assert time.monotonic() < deadline, f"{shape} never compiled"
        time.sleep(0.05)


def test_a_shape_gets_a_static_compilation_on_its_second_request(random_b0_onnx: Path) -> None:
    pool = OpenVinoPool(random_b0_onnx, Settings(openvino_static_shapes=2), "fp32", cores=2)
    try:
        assert pool.shapes.shapes == [INFERENCE]  # the inference size, compiled at load
        new = (1, 256, 320, 3)
        images = _images(new)
        first = pool._infer(0, images)  # dynamic; counted once
        assert pool.shapes.shapes == [INFERENCE] and pool.shapes.chain(new) is pool.shapes.dynamic
        _wait_for(pool, new)  # the second sight (the chain() call above) compiled it in the background
        static = pool.shapes.chain(new)
        assert static is not pool.shapes.dynamic and pool.shapes.shapes == [INFERENCE, new]
        again = static.run(1, images)  # two fp32 compilations: other kernels, the same logits
        np.testing.assert_allclose(again, first, rtol=1e-3, atol=1e-2)
        assert np.mean(again.argmax(1) == first.argmax(1)) > 0.999
        # a third shape made hot drops the least recently used one (capacity 2); `new` was used last
        third = (2, 128, 128, 3)
        pool.shapes.chain(third)
        pool.shapes.chain(third)
        _wait_for(pool, third)
        assert pool.shapes.shapes == [new, third]
        # full, and a shape was just dropped: a fourth hot shape waits its turn (EVICT_EVERY_S)
        fourth = (1, 64, 64, 3)
        for _ in range(3):
            assert pool.shapes.chain(fourth) is pool.shapes.dynamic
        assert pool.shapes.shapes == [new, third]
    finally:
        pool.close()


def test_no_static_shapes_when_turned_off(random_b0_onnx: Path) -> None:
    pool = OpenVinoPool(random_b0_onnx, Settings(openvino_static_shapes=0), "fp32", cores=2)
    try:
        for _ in range(3):
            assert pool._infer(0, _images(INFERENCE)).shape == (1, 150, 128, 128)
        assert pool.shapes.shapes == [] and pool.shapes.chain(INFERENCE) is pool.shapes.dynamic
    finally:
        pool.close()


@_NO_BF16
def test_mixed_runs_the_network_in_two_parts_close_to_fp32(random_b0_onnx: Path) -> None:
    mixed = OpenVinoPool(random_b0_onnx, Settings(), "mixed", cores=2)
    full = OpenVinoPool(random_b0_onnx, Settings(), "fp32", cores=2)
    try:
        assert mixed.precision == "mixed" and mixed.providers == ["OpenVINO:CPU:bf16+f32"]
        assert len(mixed.shapes.dynamic.steps) == 2 and len(full.shapes.dynamic.steps) == 1
        for shape in (INFERENCE, (1, 256, 320, 3)):  # static, then dynamic
            images = _images(shape)
            got, expected = mixed._infer(0, images), full._infer(0, images)
            assert got.shape == expected.shape and got.dtype == np.float32
            assert np.mean(got.argmax(1) == expected.argmax(1)) > 0.9
    finally:
        mixed.close()
        full.close()


@_NO_BF16
def test_mixed_needs_the_stage_outputs(tmp_path: Path) -> None:
    """A wrapped foreign graph has none: ``mixed`` is refused (``auto`` is fp32 anyway)."""
    wrapped = resolve_model(str(tiny_foreign(tmp_path / "foreign.onnx", 17)), Settings(cache_dir=tmp_path))
    with pytest.raises(ValueError, match="needs a graph from segformer-export"):
        OpenVinoPool(wrapped, Settings(precision="mixed"), "mixed", cores=2)


def test_a_batch_runs_image_by_image_on_one_static_compilation(random_b0_onnx: Path) -> None:
    """Batch sizes never multiply the static shapes: [N, H, W, 3] uses the [1, H, W, 3] compilation."""
    pool = OpenVinoPool(random_b0_onnx, Settings(max_batch_size=8), "fp32", cores=2)
    try:
        assert len(pool.lanes) == 1  # batching: one infer request per stream, batches are not split
        dynamic = pool.shapes.dynamic.run(0, _images((3, 512, 512, 3)))
        for size in (3, 5, 2):
            got = pool._infer(0, _images((size, 512, 512, 3)))
            assert got.shape == (size, 150, 128, 128)
        np.testing.assert_allclose(pool._infer(0, _images((3, 512, 512, 3))), dynamic, rtol=1e-3, atol=1e-2)
        time.sleep(0.5)  # no background compilation was started for a batch shape
        assert pool.shapes.shapes == [INFERENCE]
    finally:
        pool.close()


def test_shapes_larger_than_the_inference_size_stay_dynamic(random_b0_onnx: Path) -> None:
    """Static compilations hold their shape's activations: at most the inference size's pixels each."""
    pool = OpenVinoPool(random_b0_onnx, Settings(), "fp32", cores=2)
    try:
        large = (1, 640, 512, 3)
        for _ in range(3):
            assert pool.shapes.chain(large) is pool.shapes.dynamic
        time.sleep(0.5)
        assert pool.shapes.shapes == [INFERENCE]
    finally:
        pool.close()
