"""What the server knows about a contract graph: its metadata (``contract.metadata``) and input shape."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from contract.metadata import FORMAT_VERSION, PREFIX, decode_metadata

DEFAULT_INFERENCE_SIZE = (512, 512)


@dataclass(frozen=True)
class ModelSpec:
    """Everything the data plane needs about a contract graph (see docs/CONTRACT.md §3)."""

    name: str
    variant: str
    num_labels: int
    id2label: dict[int, str]
    palette: list[tuple[int, int, int]]
    inference_size: tuple[int, int]
    mask_dtype: np.dtype
    precision: str
    source: str
    source_sha256: str
    wrapped_from: str | None
    fixed_batch: int | None
    fixed_size: tuple[int, int] | None

    @property
    def foreign(self) -> bool:
        return self.wrapped_from is not None

    def label(self, class_id: int) -> str:
        return self.id2label.get(class_id, f"class_{class_id}")

    @staticmethod
    def from_graph(raw: Mapping[str, str], image_shape: list[Any]) -> ModelSpec:
        """Build from ``metadata_props`` (raw strings) and the ``image`` input's shape ``[N, H, W, 3]``."""
        if raw.get(PREFIX + "format") != FORMAT_VERSION:
            found = raw.get(PREFIX + "format")
            raise ValueError(f"not a segformer-serve graph (segformer.format={found!r})")
        meta = decode_metadata(raw)
        num_labels = int(meta["num_labels"])
        height, width = (int(v) for v in meta.get("inference_size", DEFAULT_INFERENCE_SIZE))
        dims = [d if isinstance(d, int) and d > 0 else None for d in image_shape]
        fixed_size = (dims[1], dims[2]) if dims[1] and dims[2] else None
        return ModelSpec(
            name=meta.get("name", "segformer"),
            variant=meta.get("variant", "unknown"),
            num_labels=num_labels,
            id2label={int(k): str(v) for k, v in meta.get("id2label", {}).items()},
            palette=[tuple(int(c) for c in rgb) for rgb in meta.get("palette", [])],  # type: ignore[misc]
            inference_size=fixed_size or (height, width),
            mask_dtype=np.dtype(meta.get("mask_dtype", "uint8" if num_labels <= 256 else "uint16")),
            precision=meta.get("precision", "fp32"),
            source=meta.get("source", ""),
            source_sha256=meta.get("source_sha256", ""),
            wrapped_from=meta.get("wrapped_from"),
            fixed_batch=dims[0],
            fixed_size=fixed_size,
        )
