"""What every output format shares: the request's options, an encoded answer, the encoder interface.

``Options`` are the parameters a client sends beside a format (REST query, gRPC fields, OIP request
parameters), checked here once so every transport refuses the same mistakes with the same words:
``classes`` (ids or names; the other classes become ``background``), ``tolerance`` and ``min_area``
(polygons). An encoder turns a ``SegmentResult`` and the options into ``Encoded``: bytes, their
content type and a few string fields (REST headers ``X-Segformer-*``, gRPC ``Output.fields``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from contract.spec import ModelSpec
from server import errors
from server.errors import shown
from server.types import SegmentResult

#: the most class tokens a request may name (more than any SegFormer's classes; a bound on the work)
MAX_CLASS_TOKENS = 1024
#: the longest class id a request may send (more digits are no model's class)
MAX_ID_DIGITS = 9


def background(dtype: np.dtype) -> int:
    """The value of pixels whose class was filtered out: the mask dtype's largest (255 or 65535), the
    "ignore" index of the ADE20K / Cityscapes label maps; never a class of a model below that many."""
    return int(np.iinfo(np.dtype(dtype)).max)


@dataclass(frozen=True)
class Options:
    """A request's output parameters (checked: build them with ``options``)."""

    classes: tuple[str, ...] | None = None  # as sent (ids or names); resolved against the model's labels
    tolerance: float = 0.0  # polygons: Douglas-Peucker tolerance in pixels
    min_area: float = 0.0  # polygons: rings below this area (pixels) are dropped
    alpha: float = 0.5  # overlay: the mask's opacity (the server's --overlay-alpha)

    def selected(self, spec: ModelSpec) -> tuple[int, ...] | None:
        """The class ids asked for (None: every class); 400 for an unknown id or name."""
        if self.classes is None:
            return None
        names = {spec.label(i).lower(): i for i in range(spec.num_labels)}
        ids = []
        for token in self.classes:
            text = token.strip()
            if text.isascii() and text.isdecimal():
                if len(text) > MAX_ID_DIGITS or int(text) >= spec.num_labels:
                    quoted = text if len(text) <= MAX_ID_DIGITS else shown(text)
                    raise errors.invalid_argument(
                        f"class id {quoted} is out of range: model {spec.name!r} has classes "
                        f"0..{spec.num_labels - 1}"
                    )
                ids.append(int(text))
            elif text.lower() in names:
                ids.append(names[text.lower()])
            else:
                raise errors.invalid_argument(
                    f"unknown class {shown(text)}: not an id or a label of model {spec.name!r} "
                    "(GET /v1/model lists them)"
                )
        return tuple(sorted(set(ids)))


def _number(name: str, value: float | None) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise errors.invalid_argument(f"{name} is a number of pixels >= 0, got {shown(str(value))}")
    return float(value)


def options(
    classes: str | Iterable[str | int] | None = None,
    tolerance: float | None = None,
    min_area: float | None = None,
    alpha: float = 0.5,
) -> Options:
    """Checked options: ``classes`` as a comma-separated string or a list of ids/names."""
    tokens: tuple[str, ...] | None = None
    if classes is not None:
        items = classes.split(",") if isinstance(classes, str) else list(classes)
        if any(isinstance(c, bool) or not isinstance(c, str | int) for c in items):
            raise errors.invalid_argument(f"classes are ids or names, got {shown(str(classes))}")
        tokens = tuple(str(c).strip() for c in items if str(c).strip())
        if len(tokens) > MAX_CLASS_TOKENS:
            raise errors.invalid_argument(f"classes names {len(tokens)} classes; at most {MAX_CLASS_TOKENS}")
        if not tokens:
            raise errors.invalid_argument("classes is empty: name at least one class id or label")
    return Options(tokens, _number("tolerance", tolerance), _number("min_area", min_area), alpha)


@dataclass(frozen=True)
class Encoded:
    """One image's answer in one format."""

    data: bytes
    content_type: str
    fields: dict[str, str] = field(default_factory=dict)  # e.g. shape, dtype, classes, background


class Encoder(Protocol):
    def __call__(self, result: SegmentResult, options: Options) -> Encoded: ...


def kept(result: SegmentResult, options: Options) -> list[int]:
    """The ids of the classes present in the answer (after the class filter)."""
    chosen = options.selected(result.spec)
    return [c.id for c in result.classes if chosen is None or c.id in chosen]
