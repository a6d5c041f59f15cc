"""Copy the ``openAPIV3Schema`` of published CRDs into ``tests/deploy/crd_schemas/`` (offline validation).

    python scripts/vendor_crd_schemas.py CRD.yaml [CRD.yaml ...]

For every served version of each CRD: ``<group>_<kind>_<version>.json.gz`` (gzip, sorted keys, no
``description`` strings: they do not take part in validation and are most of the size; the KServe
InferenceService schema is 1.9 MB of YAML, 22 KB this way). Which files and commits: the README there.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

import yaml

OUT = Path(__file__).resolve().parents[1] / "tests" / "deploy" / "crd_schemas"


def strip_descriptions(node: Any) -> Any:
    """The schema without ``description`` strings (a property *named* description stays)."""
    if isinstance(node, dict):
        return {
            k: strip_descriptions(v)
            for k, v in node.items()
            if not (k == "description" and isinstance(v, str))
        }
    if isinstance(node, list):
        return [strip_descriptions(v) for v in node]
    return node


def vendor(crd_file: Path) -> list[Path]:
    crd = yaml.safe_load(crd_file.read_text())
    spec = crd["spec"]
    written = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        schema = strip_descriptions(version["schema"]["openAPIV3Schema"])
        out = OUT / f"{spec['group']}_{spec['names']['kind']}_{version['name']}.json.gz"
        data = json.dumps(schema, sort_keys=True, separators=(",", ":")).encode()
        out.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
        written.append(out)
    return written


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    for name in argv:
        for out in vendor(Path(name)):
            print(f"{name} -> {out.relative_to(OUT.parents[2])} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
