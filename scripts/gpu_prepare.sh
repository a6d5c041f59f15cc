#!/usr/bin/env bash
# Prepares the GPU bench (bench/gpu.py) for a lent device machine; docs/benchmarks/GPU.md says which
# device calls to make afterwards. Run from a checkout whose .git is a folder (../shared/gpu/prepare.sh
# writes .git/info/exclude), with the shared folder at $SHARED (default ../shared):
#   1. $SHARED/gpu/prepare.sh: the onnxruntime-gpu wheel split into .gpu/p1..p5, the server's
#      pure-Python wheels into .gpu/wheels, pinned here to this venv's versions, plus what the device
#      image lacks (click, annotated-doc, opentelemetry-api) or has too old (grpcio, protobuf: the
#      generated gRPC code needs grpcio >= 1.85.1, protobuf >= 7.35.1);
#   2. install-on-device.sh copied into .gpu/wheels/ (../shared does not travel);
#   3. python -m bench.gpu_data: B0 fp32/fp16 graphs (real weights), B5 skeletons, photos -> .gpu/data.
# Usage: scripts/gpu_prepare.sh [--no-wheel]   (--no-wheel: only step 3, e.g. for a dry run)
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
SHARED=${SHARED:-$root/../shared}
PYTHON=${PYTHON:-$root/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
if [ "${1:-}" != "--no-wheel" ]; then
  if [ ! -d .git ]; then
    echo "gpu_prepare: $root is a git worktree; run this from the main checkout (prepare.sh needs .git/info/exclude)" >&2
    exit 2
  fi
  pins=$("$PYTHON" - <<'PY'
from importlib import metadata
names = """fastapi starlette uvicorn click pydantic pydantic-core pydantic-settings python-dotenv annotated-types
annotated-doc typing-inspection typing-extensions opentelemetry-api python-multipart anyio h11 grpcio
grpcio-health-checking grpcio-reflection protobuf""".split()
pins = []
for name in names:
    try:
        pins.append(f"{name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        pins.append(name)
print(" ".join(pins))
PY
)
  # shellcheck disable=SC2086  # one requirement per word
  "$SHARED/gpu/prepare.sh" $pins
  cp "$SHARED/gpu/install-on-device.sh" .gpu/wheels/
fi
"$PYTHON" -m bench.gpu_data --shared "$SHARED" --out .gpu/data
carried=$(du -sbc .gpu/data $([ -d .gpu/wheels ] && echo .gpu/wheels) | tail -1 | cut -f1)
echo "the bench call carries .gpu/data + .gpu/wheels: $((carried / 1048576)) MiB (limit 64 MiB)"
[ "$carried" -lt $((64 * 1048576)) ] || { echo "gpu_prepare: over the 64 MiB a call carries" >&2; exit 1; }
echo "next: the device calls listed in docs/benchmarks/GPU.md (5 wheel parts, then the bench)"
