"""Class names and palettes; **no torch import** (the server imports this for foreign ONNX graphs).

Built-in sets: ADE20K-150 (Hugging Face ``id2label`` order, mmseg palette) and Cityscapes-19 (train ids).
``resolve_labels`` picks, in order: a user label file/list/dict, the checkpoint's ``id2label``, a
built-in set by class count (150 -> ADE20K, 19 -> Cityscapes), else ``class_{i}`` names. Colours come
from the label file when it has them, else the built-in palette when the names are the built-in ones,
else a generated palette.

Label files: ``.json`` holding ``{"0": "wall", ...}`` or ``["wall", ...]``; any other suffix is text,
one label per line, either ``name`` or ``name,r,g,b``; blank lines and lines starting with ``#`` are
skipped.
"""

from __future__ import annotations

import colorsys
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

Palette = list[tuple[int, int, int]]
LabelSpec = str | Path | Sequence[str] | Mapping[int | str, str]

_ADE20K_NAMES = (
    "wall|building|sky|floor|tree|ceiling|road|bed|windowpane|grass|cabinet|sidewalk|person|earth|"
    "door|table|mountain|plant|curtain|chair|car|water|painting|sofa|shelf|house|sea|mirror|rug|"
    "field|armchair|seat|fence|desk|rock|wardrobe|lamp|bathtub|railing|cushion|base|box|column|"
    "signboard|chest|counter|sand|sink|skyscraper|fireplace|refrigerator|grandstand|path|stairs|"
    "runway|case|pool|pillow|screen|stairway|river|bridge|bookcase|blind|coffee|toilet|flower|book|"
    "hill|bench|countertop|stove|palm|kitchen|computer|swivel|boat|bar|arcade|hovel|bus|towel|light|"
    "truck|tower|chandelier|awning|streetlight|booth|television|airplane|dirt|apparel|pole|land|"
    "bannister|escalator|ottoman|bottle|buffet|poster|stage|van|ship|fountain|conveyer|canopy|washer|"
    "plaything|swimming|stool|barrel|basket|waterfall|tent|bag|minibike|cradle|oven|ball|food|step|"
    "tank|trade|microwave|pot|animal|bicycle|lake|dishwasher|screen|blanket|sculpture|hood|sconce|"
    "vase|traffic|tray|ashcan|fan|pier|crt|plate|monitor|bulletin|shower|radiator|glass|clock|flag"
)
_ADE20K_PALETTE = (
    "787878 b47878 06e6e6 503232 04c803 787850 8c8c8c cc05ff e6e6e6 04fa07 e005ff ebff07 96053d "
    "787846 08ff33 ff0652 8fff8c ccff04 ff3307 cc4603 0066c8 3de6fa ff0633 0b66ff ff0747 ff09e0 "
    "0907e6 dcdcdc ff095c 7009ff 08ffd6 07ffe0 ffb806 0aff47 ff290a 07ffff e0ff08 6608ff ff3d06 "
    "ffc207 ff7a08 00ff14 ff0829 ff0599 0633ff eb0cff a09614 00a3ff 8c8c8c fa0a0f 14ff00 1fff00 "
    "ff1f00 ffe000 99ff00 0000ff ff4700 00ebff 00adff 1f00ff 0bc8c8 ff5200 00fff5 003dff 00ff70 "
    "00ff85 ff0000 ffa300 ff6600 c2ff00 008fff 33ff00 0052ff 00ff29 00ffad 0a00ff adff00 00ff99 "
    "ff5c00 ff00ff ff00f5 ff0066 ffad00 ff0014 ffb8b8 001fff 00ff3d 0047ff ff00cc 00ffc2 00ff52 "
    "000aff 0070ff 3300ff 00c2ff 007aff 00ffa3 ff9900 00ff0a ff7000 8fff00 5200ff a3ff00 ffeb00 "
    "08b8aa 8500ff 00ff5c b800ff ff001f 00b8ff 00d6ff ff0070 5cff00 00e0ff 70e0ff 46b8a0 a300ff "
    "9900ff 47ff00 ff00a3 ffcc00 ff008f 00ffeb 85ff00 ff00eb f500ff ff007a fff500 0abed4 d6ff00 "
    "00ccff 1400ff ffff00 0099ff 0029ff 00ffcc 2900ff 29ff00 ad00ff 00f5ff 4700ff 7a00ff 00ffb8 "
    "005cff b8ff00 0085ff ffd600 19c2c2 66ff00 5c00ff"
)
_CITYSCAPES_NAMES = (
    "road|sidewalk|building|wall|fence|pole|traffic light|traffic sign|vegetation|terrain|sky|person|"
    "rider|car|truck|bus|train|motorcycle|bicycle"
)
_CITYSCAPES_PALETTE = (
    "804080 f423e8 464646 66669c be9999 999999 faaa1e dcdc00 6b8e23 98fb98 4682b4 dc143c ff0000 "
    "00008e 000046 003c64 005064 0000e6 770b20"
)


def _palette(hexes: str) -> Palette:
    return [(int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)) for h in hexes.split()]


ADE20K_NAMES: tuple[str, ...] = tuple(_ADE20K_NAMES.split("|"))
ADE20K_PALETTE: Palette = _palette(_ADE20K_PALETTE)
CITYSCAPES_NAMES: tuple[str, ...] = tuple(_CITYSCAPES_NAMES.split("|"))
CITYSCAPES_PALETTE: Palette = _palette(_CITYSCAPES_PALETTE)
BUILTIN: dict[str, tuple[tuple[str, ...], Palette]] = {
    "ade20k": (ADE20K_NAMES, ADE20K_PALETTE),
    "cityscapes": (CITYSCAPES_NAMES, CITYSCAPES_PALETTE),
}


def generated_palette(n: int) -> Palette:
    """``n`` distinct, deterministic colours (golden-ratio hue walk)."""
    out: Palette = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb(
            (i * 0.618033988749895) % 1.0, 0.65 + 0.35 * (i % 2), 0.95 - 0.3 * (i % 3) / 2
        )
        out.append((round(r * 255), round(g * 255), round(b * 255)))
    return out


def builtin_for(num_labels: int) -> tuple[dict[int, str], Palette] | None:
    """The built-in set with exactly ``num_labels`` classes (150 -> ADE20K, 19 -> Cityscapes), or None."""
    for names, palette in BUILTIN.values():
        if len(names) == num_labels:
            return dict(enumerate(names)), list(palette)
    return None


def read_label_file(path: str | Path) -> tuple[dict[int, str], Palette | None]:
    """Parse a label file (see the module docstring) into ``id2label`` and an optional palette."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, Mapping) and "id2label" in data:
            data = data["id2label"]
        return _normalise(data), None
    names: list[str] = []
    colours: Palette = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4:
            try:
                colours.append((int(parts[1]), int(parts[2]), int(parts[3])))
            except ValueError:
                raise ValueError(f"{path}:{number}: expected 'name' or 'name,r,g,b', got {raw!r}") from None
        elif len(parts) != 1:
            raise ValueError(f"{path}:{number}: expected 'name' or 'name,r,g,b', got {raw!r}")
        names.append(parts[0])
    if colours and len(colours) != len(names):
        raise ValueError(f"{path}: give a colour on every line or on none")
    if any(not 0 <= c <= 255 for rgb in colours for c in rgb):
        raise ValueError(f"{path}: colour components must be 0..255")
    return dict(enumerate(names)), colours or None


def _normalise(data: object) -> dict[int, str]:
    if isinstance(data, Mapping):
        id2label = {int(k): str(v) for k, v in data.items()}
    elif isinstance(data, Sequence) and not isinstance(data, str):
        id2label = {i: str(v) for i, v in enumerate(data)}
    else:
        raise ValueError(f"labels must be a mapping id -> name or a list of names, got {type(data).__name__}")
    if sorted(id2label) != list(range(len(id2label))):
        raise ValueError(f"label ids must be 0..{len(id2label) - 1} without gaps")
    return dict(sorted(id2label.items()))


def load_label_spec(labels: LabelSpec) -> tuple[dict[int, str], Palette | None]:
    """A user's ``labels`` option: a built-in set name, a label file, a list or a mapping."""
    if isinstance(labels, str) and labels.lower() in BUILTIN:
        names, palette = BUILTIN[labels.lower()]
        return dict(enumerate(names)), list(palette)
    if isinstance(labels, str | Path):
        return read_label_file(labels)
    return _normalise(labels), None


def resolve_labels(
    num_labels: int,
    labels: LabelSpec | None = None,
    checkpoint_id2label: Mapping[int, str] | None = None,
    checkpoint_palette: Sequence[Sequence[int]] | None = None,
) -> tuple[dict[int, str], Palette]:
    """``(id2label, palette)`` for a model with ``num_labels`` classes (precedence: module docstring)."""
    palette: Palette | None = None
    if labels is not None:
        id2label, palette = load_label_spec(labels)
    elif checkpoint_id2label and not _is_placeholder(checkpoint_id2label):
        id2label = _normalise(checkpoint_id2label)
        if checkpoint_palette is not None and len(checkpoint_palette) == len(id2label):
            palette = [(int(c[0]), int(c[1]), int(c[2])) for c in checkpoint_palette]
    else:
        id2label, palette = builtin_for(num_labels) or ({i: f"class_{i}" for i in range(num_labels)}, None)
    if len(id2label) != num_labels:
        raise ValueError(f"the model has {num_labels} classes but the labels give {len(id2label)}")
    if palette is None:
        palette = next(
            (list(p) for names, p in BUILTIN.values() if tuple(id2label.values()) == names),
            generated_palette(num_labels),
        )
    return id2label, palette


def _is_placeholder(id2label: Mapping[int, str]) -> bool:
    """transformers' default ``LABEL_0``... names carry no information."""
    return all(str(v) == f"LABEL_{k}" for k, v in id2label.items())
