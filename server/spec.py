"""What the server knows about the graph it serves, read from the ONNX metadata and input shapes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np


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
    wrapped_from: str | None
    fixed_batch: int | None
    fixed_size: tuple[int, int] | None

    @property
    def foreign(self) -> bool:
        return self.wrapped_from is not None

    def label(self, class_id: int) -> str:
        return self.id2label.get(class_id, f"class_{class_id}")

    @staticmethod
    def from_graph(meta: dict[str, str], image_shape: list[Any]) -> ModelSpec:
        """Build from ``metadata_props`` and the ``image`` input's shape ``[N, H, W, 3]``."""
        if meta.get("segformer.format") != "1":
            raise ValueError(
                f"not a segformer-serve graph (segformer.format={meta.get('segformer.format')!r})"
            )
        num_labels = int(meta["segformer.num_labels"])
        id2label = {int(k): str(v) for k, v in json.loads(meta.get("segformer.id2label", "{}")).items()}
        palette = [tuple(int(c) for c in rgb) for rgb in json.loads(meta.get("segformer.palette", "[]"))]
        height, width = (int(v) for v in json.loads(meta.get("segformer.inference_size", "[512, 512]")))
        dims = [d if isinstance(d, int) and d > 0 else None for d in image_shape]
        fixed_size = (dims[1], dims[2]) if dims[1] and dims[2] else None
        return ModelSpec(
            name=meta.get("segformer.name", "segformer"),
            variant=meta.get("segformer.variant", "unknown"),
            num_labels=num_labels,
            id2label=id2label,
            palette=palette,  # type: ignore[arg-type]
            inference_size=fixed_size or (height, width),
            mask_dtype=np.dtype(meta.get("segformer.mask_dtype", "uint8" if num_labels <= 256 else "uint16")),
            precision=meta.get("segformer.precision", "fp32"),
            source=meta.get("segformer.source", ""),
            wrapped_from=meta.get("segformer.wrapped_from"),
            fixed_batch=dims[0],
            fixed_size=fixed_size,
        )
