#!/usr/bin/env bash
# Rolling update without loss (make deploy-check, issue 14): haproxy (Debian's package) health-checking
# /readyz in front of two segformer-serve replicas on loopback; each replica is replaced the way the
# Deployment in deploy/k8s replaces a pod while 8 REST clients and one gRPC stream run through haproxy.
# Passes only with zero failed requests and every stream frame answered once, in order.
# Installs haproxy with apt when missing (root). Bounded: DEPLOY_CHECK_TIMEOUT seconds (default 240).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
if ! command -v haproxy >/dev/null && [ ! -x /usr/sbin/haproxy ]; then
  echo "installing haproxy (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
fi
echo "$(/usr/sbin/haproxy -v | head -1)"
exec timeout --kill-after=10 "${DEPLOY_CHECK_TIMEOUT:-240}" "$PY" -m tests.deploy.rollout "$@"
