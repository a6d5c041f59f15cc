"""load_segformer: HF folders (random and the real B0 weights), NVlabs .pth, random:bN, hub ids offline,
labels options and ModelInfo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from contract.labels import ADE20K_NAMES, ADE20K_PALETTE, CITYSCAPES_NAMES
from model.checkpoints import CheckpointError
from model.loading import ModelInfo, load_segformer

TOL = 1e-4


def _to_nvlabs(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official NVlabs -> HF conversion in reverse: 1-based names, fused kv, mmseg's conv_seg added."""
    rules = [
        ("segformer.encoder.patch_embeddings.{i}.layer_norm.", "backbone.patch_embed{n}.norm."),
        ("segformer.encoder.patch_embeddings.{i}.proj.", "backbone.patch_embed{n}.proj."),
        ("segformer.encoder.layer_norm.{i}.", "backbone.norm{n}."),
        ("segformer.encoder.block.{i}.", "backbone.block{n}."),
        ("decode_head.linear_c.{i}.", "decode_head.linear_c{n}."),
    ]
    fixed = [
        ("layer_norm_1", "norm1"),
        ("layer_norm_2", "norm2"),
        ("attention.self.query", "attn.q"),
        ("attention.self.sr", "attn.sr"),
        ("attention.self.layer_norm", "attn.norm"),
        ("attention.output.dense", "attn.proj"),
        ("mlp.dense1", "mlp.fc1"),
        ("mlp.dense2", "mlp.fc2"),
        ("decode_head.linear_fuse.weight", "decode_head.linear_fuse.conv.weight"),
        ("decode_head.batch_norm.", "decode_head.linear_fuse.bn."),
        ("decode_head.classifier.", "decode_head.linear_pred."),
    ]
    out: dict[str, torch.Tensor] = {}
    for original, value in hf.items():
        key = original
        for i in range(4):
            for old, new in rules:
                key = key.replace(old.format(i=i), new.format(n=i + 1))
        for old, new in fixed:
            key = key.replace(old, new)
        if "attention.self.value" in key:
            continue
        if "attention.self.key" in key:
            value = torch.cat([value, hf[original.replace(".key.", ".value.")]], dim=0)
            key = key.replace("attention.self.key", "attn.kv")
        out[key] = value.clone()
    out["decode_head.conv_seg.weight"] = torch.randn(150, 256, 1, 1)
    out["decode_head.conv_seg.bias"] = torch.randn(150)
    return out


@pytest.fixture(scope="module")
def b0(hf_folder):
    return hf_folder("b0")


def test_hf_folder_info(b0) -> None:
    folder, _ = b0
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5] * 3, "image_std": [0.25] * 3, "size": {"height": 640, "width": 480}})
    )
    try:
        net, info = load_segformer(folder)
    finally:
        (folder / "preprocessor_config.json").unlink()
    assert not net.training
    assert isinstance(info, ModelInfo)
    assert (info.name, info.variant, info.num_labels, info.source) == (folder.name, "b0", 150, str(folder))
    assert info.image_mean == (0.5, 0.5, 0.5) and info.image_std == (0.25, 0.25, 0.25)
    assert info.image_size == (640, 480)
    assert info.id2label[0] == "thing 0" and len(info.palette) == 150
    assert info.source_sha256 is not None and len(info.source_sha256) == 64


def test_real_weights_match_transformers(real_weights_dir: Path, real_photos: list[Path]) -> None:
    from transformers import SegformerForSemanticSegmentation

    net, info = load_segformer(real_weights_dir)
    assert (info.variant, info.num_labels, info.image_size) == ("b0", 150, (512, 512))
    assert info.id2label == dict(enumerate(ADE20K_NAMES)) and info.palette == ADE20K_PALETTE
    ref = SegformerForSemanticSegmentation.from_pretrained(real_weights_dir).eval()
    image = Image.open(real_photos[0]).convert("RGB").resize(info.image_size[::-1], Image.Resampling.BILINEAR)
    x = (np.asarray(image, dtype=np.float32) / 255.0 - info.image_mean) / info.image_std
    pixel_values = torch.from_numpy(x.astype(np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = ref(pixel_values=pixel_values).logits
        got = net(pixel_values)
        fused = net.fuse_for_inference()(pixel_values)
    assert (got - expected).abs().max().item() <= TOL
    assert (fused - expected).abs().max().item() <= TOL
    assert len(torch.unique(got.argmax(1))) > 1  # a real photo gives a real, multi-class mask


@pytest.mark.parametrize("wrapper", ["state_dict", "model", "bare"])
def test_nvlabs_checkpoint(b0, tmp_path: Path, wrapper: str) -> None:
    folder, ref = b0
    state = _to_nvlabs(load_file(folder / "model.safetensors"))
    assert "backbone.block1.0.attn.kv.weight" in state and "decode_head.conv_seg.weight" in state
    path = tmp_path / "segformer.b0.512x512.ade.160k.pth"
    classes = tuple(f"nv {i}" for i in range(150))
    meta = {"CLASSES": classes, "PALETTE": [[i, i, i] for i in range(150)]}
    torch.save(state if wrapper == "bare" else {wrapper: state, "meta": meta}, path)
    net, info = load_segformer(path)
    assert (info.variant, info.num_labels, info.name) == ("b0", 150, path.stem)
    if wrapper != "bare":
        assert info.id2label[5] == "nv 5" and info.palette[5] == (5, 5, 5)
    # same tensors as through the Hugging Face loader: kv split, 1-based names, conv_seg dropped
    from_hf, _ = load_segformer(folder)
    for (key, a), b in zip(net.state_dict().items(), from_hf.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    # NVlabs trained with LayerNorm eps 1e-6 in blocks and stage norms (1e-5 in the patch embeddings and
    # the key/value reduction); transformers uses 1e-5 everywhere, a small but real difference.
    eps = {name: m.eps for name, m in net.named_modules() if isinstance(m, torch.nn.LayerNorm)}
    assert eps["stages.0.blocks.0.norm1"] == eps["stages.3.norm"] == 1e-6
    assert eps["stages.0.patch_embed.norm"] == eps["stages.0.blocks.0.attn.norm"] == 1e-5
    if wrapper == "state_dict":
        x = torch.randn(1, 3, 333, 517)
        with torch.no_grad():
            expected = ref(pixel_values=x).logits
            assert (net(x) - expected).abs().max().item() <= 1e-3
            for module in net.modules():
                if isinstance(module, torch.nn.LayerNorm):
                    module.eps = 1e-5
            assert (net(x) - expected).abs().max().item() <= TOL


def test_bare_hf_weights_file(b0) -> None:
    folder, _ = b0
    from_folder, _ = load_segformer(folder)
    net, info = load_segformer(folder / "model.safetensors")
    assert (info.variant, info.num_labels, info.name) == ("b0", 150, "model")
    for (key, a), b in zip(net.state_dict().items(), from_folder.state_dict().values(), strict=True):
        assert torch.equal(a, b), key


def test_strict_loading_names_the_keys(b0, tmp_path: Path) -> None:
    folder, _ = b0
    state = _to_nvlabs(load_file(folder / "model.safetensors"))
    del state["backbone.block2.1.attn.q.bias"]
    state["backbone.block1.0.attn.extra.weight"] = torch.zeros(1)
    state["decode_head.linear_c3.proj.weight"] = torch.zeros(256, 7)
    torch.save({"state_dict": state}, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError) as err:
        load_segformer(tmp_path / "broken.pth")
    message = str(err.value)
    assert "missing keys: stages.1.blocks.1.attn.q.bias" in message
    assert "unexpected keys: stages.0.blocks.0.attn.extra.weight" in message
    assert "head.linear_c.2.weight: checkpoint (256, 7) vs model (256, 160)" in message


def test_hf_folder_with_a_missing_tensor(b0, tmp_path: Path) -> None:
    folder, _ = b0
    state = load_file(folder / "model.safetensors")
    del state["decode_head.classifier.bias"]
    save_file(state, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(CheckpointError, match=r"missing keys: head\.classifier\.bias"):
        load_segformer(tmp_path)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    torch.save({"state_dict": {"foo.weight": torch.zeros(2)}}, tmp_path / "foo.pth")
    with pytest.raises(CheckpointError, match="not a SegFormer checkpoint"):
        load_segformer(tmp_path / "foo.pth")
    with pytest.raises(CheckpointError, match=r"needs config\.json"):
        load_segformer(tmp_path)
    with pytest.raises(CheckpointError, match="neither a folder"):
        load_segformer(str(tmp_path / "nothing-here.pth"))


def test_hub_id_offline_says_how_to_pass_a_local_folder(monkeypatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError) as err:
        load_segformer("nvidia/segformer-b0-finetuned-ade-512-512")
    message = str(err.value)
    assert "nvidia/segformer-b0-finetuned-ade-512-512" in message
    assert "pass a local folder with config.json and model.safetensors" in message
    assert "e.g. --model ./segformer-b0" in message


def test_random_variants_and_labels(tmp_path: Path) -> None:
    net, info = load_segformer("random:b1")
    assert (info.variant, info.num_labels, info.name) == ("b1", 150, "segformer-b1-random")
    assert info.source_sha256 is None
    assert info.id2label[0] == "wall" and info.palette == ADE20K_PALETTE
    again, _ = load_segformer("random:b1")
    pairs = zip(net.state_dict().values(), again.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    _, info = load_segformer("random:b0", num_labels=19)
    assert list(info.id2label.values()) == list(CITYSCAPES_NAMES)
    (tmp_path / "labels.txt").write_text("# my classes\nbackground,0,0,0\ncat,255,0,0\ndog,0,255,0\n")
    _, info = load_segformer("random:b0", labels=tmp_path / "labels.txt")
    assert info.num_labels == 3 and info.id2label == {0: "background", 1: "cat", 2: "dog"}
    assert info.palette[1] == (255, 0, 0)
    _, info = load_segformer("random:b0", num_labels=4)
    assert info.id2label[3] == "class_3" and len(set(info.palette)) == 4
    with pytest.raises(CheckpointError, match=r"random:b0 \.\. random:b5"):
        load_segformer("random:b7")
    with pytest.raises(CheckpointError, match="has 4 classes but the labels give 3"):
        load_segformer("random:b0", num_labels=4, labels=["a", "b", "c"])


def test_labels_override_and_num_labels_mismatch(b0) -> None:
    folder, _ = b0
    _, info = load_segformer(folder, labels="ade20k")
    assert info.id2label[2] == "sky" and info.palette == ADE20K_PALETTE
    with pytest.raises(CheckpointError, match="150 classes but num_labels=19"):
        load_segformer(folder, num_labels=19)
