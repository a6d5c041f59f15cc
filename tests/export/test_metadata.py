"""``segformer.*`` metadata: exactly the keys of docs/CONTRACT.md §3, and they round-trip."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import onnx
import torch

from contract.metadata import decode_metadata, package_version, read_metadata
from model.loading import ModelInfo, load_segformer
from model.segformer import SegFormer

CONTRACT_KEYS = {
    f"segformer.{key}"
    for key in [
        "format",
        "name",
        "variant",
        "num_labels",
        "id2label",
        "palette",
        "image_mean",
        "image_std",
        "inference_size",
        "input_layout",
        "outputs",
        "mask_dtype",
        "precision",
        "source",
        "source_sha256",
        "versions",
    ]
}


def _check_round_trip(path: Path, info: ModelInfo) -> dict[str, object]:
    raw = read_metadata(path)
    assert set(raw) == CONTRACT_KEYS
    assert all(isinstance(v, str) for v in raw.values())
    meta = decode_metadata(raw)
    assert meta["format"] == "1"
    assert meta["name"] == info.name and meta["variant"] == info.variant
    assert meta["num_labels"] == info.num_labels == len(meta["id2label"])
    assert meta["id2label"] == info.id2label
    assert meta["palette"] == [list(c) for c in info.palette]
    assert meta["image_mean"] == list(info.image_mean) and meta["image_std"] == list(info.image_std)
    assert meta["inference_size"] == list(info.image_size)
    assert meta["input_layout"] == "NHWC-uint8-RGB"
    assert meta["outputs"] == ["mask"]
    assert meta["mask_dtype"] == "uint8" and meta["precision"] == "fp32"
    assert meta["source"] == info.source
    assert meta["versions"] == {
        "segformer_serve": package_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "opset": 17,
    }
    return meta


def test_random_b0_metadata(random_b0: tuple[SegFormer, ModelInfo], random_b0_onnx: Path) -> None:
    meta = _check_round_trip(random_b0_onnx, random_b0[1])
    assert meta["variant"] == "b0" and meta["source"] == "random:b0"
    assert meta["source_sha256"] == ""  # nothing was read from disk


def test_real_b0_metadata(real_b0_onnx: Path, real_weights_dir: Path) -> None:
    _, info = load_segformer(real_weights_dir)
    meta = _check_round_trip(real_b0_onnx, info)
    assert meta["id2label"][0] == "wall" and meta["num_labels"] == 150
    assert meta["inference_size"] == [512, 512]
    weights = (real_weights_dir / "model.safetensors").read_bytes()
    assert meta["source_sha256"] == hashlib.sha256(weights).hexdigest()
    # valid JSON exactly where the contract says so (the server parses these)
    assert json.loads(read_metadata(real_b0_onnx)["segformer.palette"])[0] == list(info.palette[0])
