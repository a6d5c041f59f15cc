# segformer-serve — the two commands a fresh machine needs:  `make serve`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ORT_EXTRA ?= cpu,openvino
# Real weights and photos for the fidelity tests (skipped with a reason when absent).
SEGFORMER_TEST_SHARED ?= $(if $(wildcard ../shared/weights),$(abspath ../shared),)
export SEGFORMER_TEST_SHARED
SEGFORMER_MODEL ?= nvidia/segformer-b0-finetuned-ade-512-512
export SEGFORMER_MODEL

.PHONY: serve test lint proto bench clean container-smoke gpu-prepare gpu-dry-run deploy-check perf-analyzer
# Triton's perf_analyzer (tests/v2, make bench): PyPI's manylinux_2_38 wheel, plus Debian 13's glibc when
# this system's is older (bench/perf_analyzer.py; nothing installed system-wide)
PERF_ANALYZER := .cache/perf_analyzer/pkg/perf_analyzer/bin/perf_analyzer

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(ORT_EXTRA),tracing,export,test,dev,bench,client]"
	touch $@

# Installs, exports the default model once into the cache, serves REST on :8000 and gRPC on :50051.
serve: $(VENV)/.installed
	$(VENV)/bin/segformer-serve --model "$(SEGFORMER_MODEL)"

$(PERF_ANALYZER): $(VENV)/.installed
	$(PY) -m bench.perf_analyzer --install

perf-analyzer: $(PERF_ANALYZER)

# Installs, lints, checks the generated gRPC code is fresh, runs the whole test suite.
test: $(VENV)/.installed $(PERF_ANALYZER)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

# Regenerates server/grpc/gen from proto/ (a test fails when the committed code is stale).
proto: $(VENV)/.installed
	$(PY) scripts/gen_proto.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Builds the CPU image from the Dockerfile with podman (debootstrap base; root + apt) and smoke-tests it.
container-smoke: $(VENV)/.installed
	scripts/container_smoke.sh

# Rolling update behind haproxy (apt) with 2 replicas under REST + gRPC load: nothing lost (~1 min).
deploy-check: $(VENV)/.installed
	PY=$(PY) scripts/deploy_check.sh

# Side by side: our server vs raw ONNX Runtime, transformers and PyTriton → docs/benchmarks/ (~8 min on 2 cores).
SEGFORMER_BENCH_SHARED ?= $(SEGFORMER_TEST_SHARED)
bench: $(VENV)/.installed $(PERF_ANALYZER)
	SEGFORMER_BENCH_SHARED="$(SEGFORMER_BENCH_SHARED)" $(PY) -m bench --triton $(BENCH_ARGS)

# What a lent GPU machine needs for `python -m bench.gpu` (docs/benchmarks/GPU.md): the onnxruntime-gpu
# wheel in parts, the server's wheels, the graphs and photos, all under .gpu/ (gitignored). Needs ../shared.
gpu-prepare: $(VENV)/.installed
	SHARED="$(SEGFORMER_TEST_SHARED)" PYTHON="$(PY)" scripts/gpu_prepare.sh $(GPU_PREPARE_ARGS)

# The GPU bench on this CPU with tiny counts and small graphs: every phase runs, no number is a GPU's (~1 min).
gpu-dry-run: $(VENV)/.installed
	$(PY) -m bench.gpu_data --shared "$(SEGFORMER_TEST_SHARED)" --out .gpu/dry-data --b5-source "" --inference-size 128x128
	$(PY) -m bench.gpu --dry-run --data .gpu/dry-data --out .gpu/dry-out --work .gpu/dry-work

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .cache
