"""The ``segformer.*`` metadata of every serving graph (docs/CONTRACT.md §3): written and read here only.

The exporter (``export/api.py``) and the foreign-graph wrapper (``contract/foreign.py``) write it with
``build_metadata``; the server reads it with ``decode_metadata`` (``contract/spec.py``). No torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, BinaryIO

import onnx

FORMAT_VERSION = "1"
PREFIX = "segformer."
INPUT_LAYOUT = "NHWC-uint8-RGB"
JSON_KEYS = frozenset(
    {"id2label", "palette", "image_mean", "image_std", "inference_size", "outputs", "versions"}
)


def package_version() -> str:
    try:
        return importlib_metadata.version("segformer-serve")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def build_metadata(
    *,
    name: str,
    variant: str,
    id2label: Mapping[int, str],
    palette: Sequence[Sequence[int]],
    image_mean: Sequence[float],
    image_std: Sequence[float],
    inference_size: tuple[int, int],
    outputs: Sequence[str],
    mask_dtype: str,
    precision: str,
    source: str,
    source_sha256: str | None,
    versions: Mapping[str, Any],
    labels: str | None = None,
    wrapped_from: str | None = None,
) -> dict[str, str]:
    """All values as strings (JSON where the contract says so), keys prefixed with ``segformer.``."""

    def dump(value: object) -> str:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    fields: dict[str, str] = {
        "format": FORMAT_VERSION,
        "name": name,
        "variant": variant,
        "num_labels": str(len(id2label)),
        "id2label": dump({str(int(k)): str(v) for k, v in sorted(id2label.items())}),
        "palette": dump([[int(c) for c in colour] for colour in palette]),
        "image_mean": dump([float(v) for v in image_mean]),
        "image_std": dump([float(v) for v in image_std]),
        "inference_size": dump([int(v) for v in inference_size]),
        "input_layout": INPUT_LAYOUT,
        "outputs": dump(list(outputs)),
        "mask_dtype": mask_dtype,
        "precision": precision,
        "source": source,
        "source_sha256": source_sha256 or "",
        "versions": dump(dict(versions)),
    }
    if labels is not None:  # where the labels came from: builtin or generated (foreign graphs)
        fields["labels"] = labels
    if wrapped_from is not None:  # foreign graphs: the original input -> output signature
        fields["wrapped_from"] = wrapped_from
    return {PREFIX + key: value for key, value in fields.items()}


def set_metadata(model: onnx.ModelProto, values: Mapping[str, str]) -> None:
    """Replace the ``segformer.*`` entries of ``model.metadata_props`` with ``values``."""
    kept = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, dict(kept) | dict(values))


def read_metadata(model: onnx.ModelProto | str | Path) -> dict[str, str]:
    """The raw ``segformer.*`` metadata (strings) of a model or a file (the graph is not read)."""
    props = model.metadata_props if isinstance(model, onnx.ModelProto) else file_props(Path(model))
    return {p.key: p.value for p in props if p.key.startswith(PREFIX)}


_METADATA_PROPS = 14  # ModelProto.metadata_props
_MAX_ENTRY = 16 * 1024 * 1024


def _varint(stream: BinaryIO) -> int | None:
    """A protobuf varint (None at the end of the stream, between fields)."""
    value = shift = 0
    while byte := stream.read(1):
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
        if shift > 63:
            raise ValueError("not an ONNX graph: a malformed protobuf varint")
    if shift:
        raise ValueError("not an ONNX graph: truncated")
    return None


def file_props(path: Path) -> list[onnx.StringStringEntryProto]:
    """The ``metadata_props`` of the ONNX file at ``path``, read field by field: the graph and its weights
    are skipped over, never read (a 1 GiB graph costs a few reads, not 1 GiB of memory).
    ValueError when the file is not a protobuf message."""
    props = []
    size = path.stat().st_size
    with path.open("rb") as stream:
        while (key := _varint(stream)) is not None:
            field, wire = key >> 3, key & 7
            if field == 0:  # no protobuf field has number 0 (a file of zeros is not read to its end)
                raise ValueError("not an ONNX graph: protobuf field number 0")
            if wire == 0:
                if _varint(stream) is None:
                    raise ValueError("not an ONNX graph: truncated")
            elif wire in (1, 5):
                stream.seek(8 if wire == 1 else 4, 1)
            elif wire == 2:
                length = _varint(stream)
                if length is None or stream.tell() + length > size:
                    raise ValueError("not an ONNX graph: a field runs past the end of the file")
                if field != _METADATA_PROPS:
                    stream.seek(length, 1)
                elif length > _MAX_ENTRY:
                    raise ValueError(f"an ONNX metadata entry of {length} bytes (at most {_MAX_ENTRY})")
                else:
                    props.append(onnx.StringStringEntryProto.FromString(stream.read(length)))
            else:
                raise ValueError(f"not an ONNX graph: protobuf wire type {wire}")
            if stream.tell() > size:
                raise ValueError("not an ONNX graph: truncated")
    return props


def decode_metadata(raw: Mapping[str, str]) -> dict[str, Any]:
    """Un-prefixed, JSON-decoded metadata; ``id2label`` gets int keys, ``num_labels`` is an int."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if not key.startswith(PREFIX):
            continue
        short = key.removeprefix(PREFIX)
        out[short] = json.loads(value) if short in JSON_KEYS else value
    if "id2label" in out:
        out["id2label"] = {int(k): v for k, v in out["id2label"].items()}
    if "num_labels" in out:
        out["num_labels"] = int(out["num_labels"])
    return out
