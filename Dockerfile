# segformer-serve container image: one Dockerfile, GPU first, CPU by build arguments.
#
#   GPU (default):  docker build --target runtime -t segformer-serve:gpu .
#   CPU:            docker build --target runtime --build-arg BASE=python:3.11-slim \
#                                --build-arg ORT_EXTRA=cpu,openvino -t segformer-serve:cpu .
#   model baked in: docker build --target baked --build-arg EXPORT_SOURCE=nvidia/segformer-b0-finetuned-ade-512-512 ...
#
# Stages: python-base (BASE + a python3 with venv) -> builder (venv with `.[ORT_EXTRA]`, no torch)
#         -> runtime (non-root, venv only; the model comes from a volume at /models)
#         export (builder + CPU torch: runs segformer-export) -> baked (runtime + the exported model,
#         /opt/segformer/model.onnx, read-only for the non-root user)
# `runtime` is built with --target runtime; `baked` is the last stage and pulls in `export`.
# See docs/container.md. Needs no BuildKit-only syntax (buildah 1.28 builds it too): no heredocs, no COPY --link.

# CUDA 13 + cuDNN 9 runtime: what the onnxruntime-gpu 1.31/1.32 wheels on PyPI are built for.
ARG BASE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------------------------------------------------
FROM ${BASE} AS python-base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# python:3.11-slim and the Debian test base already have python3 with venv; the CUDA (Ubuntu 24.04)
# base has no python at all: take the distribution's python3 (3.12) and venv, nothing else.
# hadolint ignore=DL3008
RUN if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then \
      apt-get update \
      && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 --version

# ---------------------------------------------------------------------------------------------------------
FROM python-base AS builder
# cpu -> onnxruntime, gpu -> onnxruntime-gpu (pyproject extras; never both); a comma list adds extras:
# the CPU image is built with cpu,openvino (OpenVINO bf16 on AMX / AVX512-BF16 CPUs, docs/openvino.md)
ARG ORT_EXTRA=gpu
# (byte-compiled at install: the non-root runtime user cannot write __pycache__ into /opt/venv)
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
WORKDIR /src
# 1) third-party dependencies only (cached layer: changes only with pyproject.toml)
COPY pyproject.toml README.md ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -c 'import sys, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
extras = p["optional-dependencies"]; \
print("\n".join(p["dependencies"] + [d for e in sys.argv[1].split(",") for d in extras[e]]))' "${ORT_EXTRA},tracing" > /tmp/requirements.txt \
    && /opt/venv/bin/pip install -r /tmp/requirements.txt \
    && ov="$(/opt/venv/bin/python -c 'import importlib.util as u; s = u.find_spec("openvino"); print(s.submodule_search_locations[0] if s else "")')" \
    && if [ -n "$ov" ]; then \
      echo "openvino: dropping the GPU/NPU plugins, the non-ONNX frontends and the C++ headers (180 -> 112 MB)"; \
      rm -rf "$ov/include" "$ov/libs/libopenvino_intel_gpu_plugin.so" "$ov/libs/libopenvino_intel_npu_plugin.so"; \
      for fe in tensorflow tensorflow_lite pytorch paddle jax gguf; do rm -f "$ov/libs/libopenvino_${fe}_frontend.so"*; done; \
    fi
# 2) the project itself (no deps: all resolved above), as a regular (non-editable) install; then check it
#    imports with no torch, and drop pip/setuptools (not needed to serve; the export stage restores pip)
COPY contract/ contract/
COPY model/ model/
COPY export/ export/
COPY server/ server/
COPY client/ client/
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/pip install --no-deps . \
    && /opt/venv/bin/python -c 'import onnxruntime, server; print("onnxruntime", onnxruntime.__version__, onnxruntime.get_available_providers())' \
    && { ! /opt/venv/bin/python -c 'import importlib.util as u, sys; sys.exit(u.find_spec("openvino") is None)' \
         || /opt/venv/bin/python -c 'import openvino as ov; print("openvino", ov.__version__, ov.Core().available_devices)'; } \
    && if /opt/venv/bin/python -c 'import torch' 2>/dev/null; then echo "torch must not be in the serving venv" >&2; exit 1; fi \
    && /opt/venv/bin/python -m pip uninstall -q -y pip setuptools

# ---------------------------------------------------------------------------------------------------------
FROM python-base AS runtime
ARG ORT_EXTRA=gpu
ARG UID=10001
LABEL org.opencontainers.image.title="segformer-serve" \
      org.opencontainers.image.description="SegFormer semantic segmentation server (ONNX Runtime, REST + gRPC)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.segformer.ort-extra="${ORT_EXTRA}"
RUN useradd --uid "${UID}" --user-group --create-home --home-dir /home/segformer --shell /usr/sbin/nologin segformer \
    && mkdir -p /models \
    && chown segformer:segformer /models
COPY --from=builder /opt/venv /opt/venv
# HOME is writable: the server's cache dir defaults below it. The model is a read-only mount at /models.
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/segformer \
    SEGFORMER_MODEL=/models/model.onnx \
    SEGFORMER_HOST=0.0.0.0 \
    SEGFORMER_PORT=8000 \
    SEGFORMER_GRPC_PORT=50051
USER ${UID}:${UID}
WORKDIR /home/segformer
EXPOSE 8000 50051
# No curl in the image: python's urllib. Ready means the model is loaded and the batcher runs.
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('SEGFORMER_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["segformer-serve"]

# ---------------------------------------------------------------------------------------------------------
# Build-time export (needs internet: PyTorch's CPU wheel index and the model hub). torch lives only here.
FROM builder AS export
ARG TORCH_VERSION=2.13.0
# where the CPU torch wheel comes from (PyPI's torch is the multi-GB CUDA build, not needed to export);
# offline: --build-arg "TORCH_PIP_ARGS=--find-links /wheels" with the wheelhouse bind-mounted at /wheels
ARG TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
# anything `segformer-export` accepts that is reachable from the build: a hub id, random:b0, a URL ...
ARG EXPORT_SOURCE=nvidia/segformer-b0-finetuned-ade-512-512
ARG EXPORT_ARGS=""
# hadolint ignore=SC2086
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/python -m ensurepip \
    && /opt/venv/bin/python -m pip install ${TORCH_PIP_ARGS} "torch==${TORCH_VERSION}" \
    && /opt/venv/bin/python -m pip install ".[export]"
# hadolint ignore=SC2086
RUN mkdir -p /export \
    && /opt/venv/bin/segformer-export "${EXPORT_SOURCE}" -o /export/model.onnx ${EXPORT_ARGS} \
    && chmod 0444 /export/model.onnx

# ---------------------------------------------------------------------------------------------------------
# The runtime image with the exported model inside (no torch: only the .onnx crosses over). It lives
# outside /models, so a volume mounted there (compose always mounts one) cannot hide it.
FROM runtime AS baked
ENV SEGFORMER_MODEL=/opt/segformer/model.onnx
COPY --from=export /export/model.onnx /opt/segformer/model.onnx
