"""``load_segformer(source)``: build a SegFormer from the checkpoint ``source`` names (docs/model.md).

``source`` is one of: a Hugging Face folder (``config.json`` + ``model.safetensors`` or
``pytorch_model.bin``), a hub id (``nvidia/segformer-b0-finetuned-ade-512-512``), a checkpoint file
(NVlabs/mmseg 0.x ``.pth``, or a bare HF-named ``.safetensors``/``.bin``), or ``random:b0``..``random:b5``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch

from contract.labels import LabelSpec, Palette, load_label_spec, resolve_labels
from model import checkpoints
from model.checkpoints import CheckpointError, StateDict, find_variant
from model.segformer import VARIANTS, SegFormer, SegFormerConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclasses.dataclass
class ModelInfo:
    name: str
    variant: str
    num_labels: int
    id2label: dict[int, str]
    palette: list[tuple[int, int, int]]
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD
    image_size: tuple[int, int] = (512, 512)
    source: str = ""
    source_sha256: str | None = None


def load_segformer(
    source: str | Path, *, num_labels: int | None = None, labels: LabelSpec | None = None
) -> tuple[SegFormer, ModelInfo]:
    """Load a SegFormer in eval mode and describe it. Raises ``CheckpointError`` with a readable reason."""
    text = str(source)
    if text.lower().startswith("random:"):
        return _random(text, num_labels, labels)
    path = Path(text).expanduser()
    if path.is_dir():
        return _from_hf_folder(path, text, num_labels, labels, name=path.resolve().name)
    if path.is_file():
        return _from_file(path, text, num_labels, labels)
    if _HUB_ID.match(text) and not text.startswith((".", "/")):
        return _from_hf_folder(_download(text), text, num_labels, labels, name=text)
    raise CheckpointError(
        f"model source {text!r} is neither a folder, a checkpoint file, a hub id (owner/name) "
        f"nor random:b0..b5"
    )


def _random(text: str, num_labels: int | None, labels: LabelSpec | None) -> tuple[SegFormer, ModelInfo]:
    variant = text.split(":", 1)[1].lower()
    if variant not in VARIANTS:
        raise CheckpointError(f"unknown variant in {text!r}; use random:b0 .. random:b5")
    if num_labels is None and labels is not None:
        try:
            num_labels = len(load_label_spec(labels)[0])
        except (ValueError, OSError) as exc:
            raise CheckpointError(f"labels: {exc}") from None
    cfg = dataclasses.replace(VARIANTS[variant], num_labels=num_labels or 150)
    net = SegFormer(cfg).init_weights(seed=0).eval()
    return net, _info(net, f"segformer-{variant}-random", variant, labels, None, text, None)


def _from_hf_folder(
    folder: Path, source: str, num_labels: int | None, labels: LabelSpec | None, *, name: str
) -> tuple[SegFormer, ModelInfo]:
    config_path = folder / "config.json"
    weights = next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None)
    if not config_path.is_file() or weights is None:
        raise CheckpointError(
            f"{folder} is not a Hugging Face SegFormer folder: it needs config.json and one of {WEIGHT_FILES}"
        )
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("model_type", "segformer") != "segformer":
        raise CheckpointError(f"{config_path}: model_type is {config.get('model_type')!r}, not 'segformer'")
    _check_standard(config, config_path)
    id2label = {int(k): str(v) for k, v in (config.get("id2label") or {}).items()}
    mlp = set(config.get("mlp_ratios", [4]))
    cfg = SegFormerConfig(
        widths=tuple(config["hidden_sizes"]),
        depths=tuple(config["depths"]),
        decoder_width=int(config.get("decoder_hidden_size", 256)),
        heads=tuple(config.get("num_attention_heads", (1, 2, 5, 8))),
        sr_ratios=tuple(config.get("sr_ratios", (8, 4, 2, 1))),
        mlp_ratio=int(mlp.pop()),
        num_labels=len(id2label) or int(config.get("num_labels", 150)),
    )
    state = checkpoints.from_hf(_read_weights(weights)[0])
    net = _build(cfg, state, weights, num_labels)
    info = _info(
        net, name, find_variant(cfg.widths, cfg.depths) or "custom", labels, id2label, source, weights
    )
    _apply_preprocessor(info, folder / "preprocessor_config.json")
    return net, info


def _check_standard(config: dict[str, Any], path: Path) -> None:
    expected = {
        "patch_sizes": [7, 3, 3, 3],
        "strides": [4, 2, 2, 2],
        "num_encoder_blocks": 4,
        "num_channels": 3,
    }
    for key, value in expected.items():
        if key in config and config[key] != value:
            raise CheckpointError(f"{path}: unsupported {key}={config[key]!r} (only {value!r} is supported)")
    if config.get("hidden_act", "gelu") != "gelu" or len(set(config.get("mlp_ratios", [4]))) != 1:
        raise CheckpointError(
            f"{path}: only hidden_act='gelu' and one mlp ratio for all stages are supported"
        )


def _apply_preprocessor(info: ModelInfo, path: Path) -> None:
    if not path.is_file():
        return
    pre = json.loads(path.read_text(encoding="utf-8"))
    if "image_mean" in pre and "image_std" in pre:
        info.image_mean = tuple(float(x) for x in pre["image_mean"])  # type: ignore[assignment]
        info.image_std = tuple(float(x) for x in pre["image_std"])  # type: ignore[assignment]
    size = pre.get("size")
    if isinstance(size, dict) and "height" in size and "width" in size:
        info.image_size = (int(size["height"]), int(size["width"]))
    elif isinstance(size, int):
        info.image_size = (size, size)


def _from_file(
    path: Path, source: str, num_labels: int | None, labels: LabelSpec | None
) -> tuple[SegFormer, ModelInfo]:
    raw, meta = _read_weights(path)
    fmt = _detect(raw, path)
    remap = {"hf": checkpoints.from_hf, "nvlabs": checkpoints.from_nvlabs, "mmseg1": checkpoints.from_mmseg1}
    state = remap[fmt](raw)
    arch = checkpoints.infer_arch(state)
    # LayerNorm eps as each code base trained with: transformers 1e-5; NVlabs 1e-6 in blocks and stage norms;
    # mmseg 1.x 1e-6 everywhere.
    eps = {"hf": (1e-5, 1e-5), "nvlabs": (1e-6, 1e-5), "mmseg1": (1e-6, 1e-6)}[fmt]
    head = "mmseg1" if fmt == "mmseg1" else "mlp"
    cfg = SegFormerConfig(**arch, norm_eps=eps[0], embed_eps=eps[1], head=head)  # type: ignore[arg-type]
    net = _build(cfg, state, path, num_labels)
    ck_labels = ck_palette = None
    meta = meta if isinstance(meta, dict) else {}
    dataset = meta.get("dataset_meta") if isinstance(meta.get("dataset_meta"), dict) else {}  # mmseg 1.x
    classes = meta.get("CLASSES") or dataset.get("classes")
    if classes and len(classes) == cfg.num_labels:
        ck_labels, ck_palette = dict(enumerate(classes)), meta.get("PALETTE") or dataset.get("palette")
    variant = find_variant(cfg.widths, cfg.depths) or "custom"
    info = _info(net, path.stem, variant, labels, ck_labels, source, path, ck_palette)
    return net, info


def _detect(state: StateDict, path: Path) -> str:
    try:
        return checkpoints.detect_format(state)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def _read_weights(path: Path) -> tuple[StateDict, dict[str, Any] | None]:
    """Tensors of a ``.safetensors`` file or a torch pickle (``state_dict``/``model``/bare), safely,
    and mmseg's ``meta`` (``CLASSES``, ``PALETTE``) when present."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path)), None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot read {path} as a torch checkpoint with weights_only=True: {exc}"
        ) from None
    meta = obj.get("meta") if isinstance(obj, dict) else None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path} holds no state dict (expected tensors, or a 'state_dict'/'model' entry)"
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}, meta


def _build(cfg: SegFormerConfig, state: StateDict, weights: Path, num_labels: int | None) -> SegFormer:
    if num_labels is not None and num_labels != cfg.num_labels:
        raise CheckpointError(
            f"{weights} has {cfg.num_labels} classes but num_labels={num_labels} was asked for"
        )
    net = SegFormer(cfg)
    checkpoints.load_strict(net, state, str(weights))
    return net.eval()


def _info(
    net: SegFormer,
    name: str,
    variant: str,
    labels: LabelSpec | None,
    ck_labels: dict[int, str] | None,
    source: str,
    weights: Path | None,
    ck_palette: Palette | None = None,
) -> ModelInfo:
    try:
        id2label, palette = resolve_labels(net.num_labels, labels, ck_labels, ck_palette)
    except (ValueError, OSError) as exc:
        raise CheckpointError(f"labels: {exc}") from None
    digest = _sha256(weights) if weights is not None else None
    return ModelInfo(name, variant, net.num_labels, id2label, palette, source=source, source_sha256=digest)


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _download(repo_id: str) -> Path:
    """Snapshot the hub repo's config and weights into the huggingface_hub cache (reused when offline)."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=["*.json", "model.safetensors"]))
        if not (folder / "model.safetensors").is_file():
            folder = Path(snapshot_download(repo_id, allow_patterns=["*.json", "pytorch_model.bin"]))
    except Exception as exc:
        raise CheckpointError(
            f"{repo_id!r} is no local path and cannot be downloaded from the Hugging Face hub "
            f"({type(exc).__name__}: {exc}); "
            "if this machine is offline, pass a local folder with config.json and model.safetensors, "
            "e.g. --model ./segformer-b0"
        ) from None
    return folder
