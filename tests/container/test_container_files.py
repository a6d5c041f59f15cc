"""Static consistency of the container files (no podman needed; runs in `make test`).

The image itself is built and smoke-tested by ``scripts/container_smoke.sh`` (``make container-smoke``).
These checks catch the drift that smoke test cannot see: the GPU compose path, the Grafana dashboard
against ``server/metrics.py``, and ``SEGFORMER_*`` variables against ``server/settings.py``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]


class _ComposeLoader(yaml.SafeLoader):
    """SafeLoader that accepts Compose's merge tags (``!reset``, ``!override``)."""


def _tagged(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node)
    else:
        value = loader.construct_scalar(node)
    return {"__tag__": tag_suffix, "value": value}


_ComposeLoader.add_multi_constructor("!", _tagged)


def _yaml(path: str) -> dict:
    return yaml.load((ROOT / path).read_text(), Loader=_ComposeLoader)  # a SafeLoader subclass


def _stages() -> dict[str, list[str]]:
    """Dockerfile stage name -> its instruction lines (continuations joined, comments dropped)."""
    text = (ROOT / "Dockerfile").read_text()
    lines, cur = [], ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#") and not cur:
            continue
        cur += raw.rstrip("\\").strip() + " " if raw.rstrip().endswith("\\") else raw.strip()
        if not raw.rstrip().endswith("\\"):
            if cur.strip():
                lines.append(cur.strip())
            cur = ""
    stages: dict[str, list[str]] = {"<global>": []}
    name = "<global>"
    for line in lines:
        m = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if m:
            name = m.group(1)
            stages[name] = []
        stages[name].append(line)
    return stages


def test_dockerfile_default_base_is_cuda13_cudnn9_runtime() -> None:
    glob = _stages()["<global>"]
    base = next(line for line in glob if line.startswith("ARG BASE="))
    assert re.fullmatch(r"ARG BASE=nvidia/cuda:13\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+", base), base


def test_dockerfile_stages_and_runtime_hygiene() -> None:
    stages = _stages()
    assert list(stages)[1:] == ["python-base", "builder", "runtime", "export", "baked"]
    runtime = " ".join(stages["runtime"])
    assert "torch" not in runtime and "[export]" not in runtime
    assert re.search(r"\bUSER \$\{UID\}", runtime) and "ARG UID=10001" in runtime
    assert "EXPOSE 8000 50051" in runtime
    assert "HEALTHCHECK" in runtime and "/readyz" in runtime
    assert "SEGFORMER_MODEL=/models/model.onnx" in runtime
    assert re.findall(r"COPY --from=(\S+)", runtime) == ["builder"]
    builder = " ".join(stages["builder"])
    assert "ARG ORT_EXTRA=gpu" in builder and "${ORT_EXTRA}" in builder
    # torch only in the export stage; the baked image takes only the .onnx from it
    export = " ".join(stages["export"])
    assert "torch" in export
    assert "chmod 0444 /export/model.onnx" in export  # readable by the non-root user of `baked`
    baked = " ".join(stages["baked"])
    assert re.findall(r"COPY --from=(\S+) (\S+) (\S+)", baked) == [
        ("export", "/export/model.onnx", "/opt/segformer/model.onnx")
    ]
    assert "SEGFORMER_MODEL=/opt/segformer/model.onnx" in baked


def _settings_fields() -> set[str]:
    from server.settings import Settings

    return set(Settings.model_fields)


def test_segformer_env_vars_are_real_settings() -> None:
    fields = _settings_fields()
    dockerfile_env = re.findall(r"\bSEGFORMER_([A-Z_]+)=", (ROOT / "Dockerfile").read_text())
    compose = _yaml("docker-compose.yml")
    compose_env = [k.removeprefix("SEGFORMER_") for k in compose["services"]["segformer"]["environment"]]
    assert dockerfile_env and compose_env
    for name in dockerfile_env + compose_env:
        assert name.lower() in fields, f"SEGFORMER_{name} is not a field of server.settings.Settings"


def test_compose_gpu_reservation_and_cpu_override() -> None:
    gpu = _yaml("docker-compose.yml")["services"]
    seg = gpu["segformer"]
    (device,) = seg["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert seg["build"]["args"]["ORT_EXTRA"] == "gpu"
    assert seg["build"]["args"]["BASE"].startswith("nvidia/cuda:13.")
    assert any(v.endswith(":/models:ro") for v in seg["volumes"])
    assert {"prometheus", "grafana"} <= set(gpu)

    cpu = _yaml("docker-compose.cpu.yml")["services"]["segformer"]
    assert cpu["build"]["args"] == {"BASE": "python:3.11-slim", "ORT_EXTRA": "cpu,openvino"}
    assert cpu["deploy"]["resources"]["reservations"]["devices"] == {"__tag__": "reset", "value": []}


def test_prometheus_scrapes_the_compose_service() -> None:
    prom = _yaml("deploy/prometheus/prometheus.yml")
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "segformer-serve")
    assert job.get("metrics_path", "/metrics") == "/metrics"
    (target,) = job["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host in _yaml("docker-compose.yml")["services"] and port == "8000"


def _declared_metrics() -> dict[str, str]:
    from prometheus_client.metrics import MetricWrapperBase

    import server.metrics as m

    out = {}
    for obj in vars(m).values():
        if isinstance(obj, MetricWrapperBase):
            out[obj._name] = obj._type  # name without the _total suffix for counters
    return out


def test_dashboard_uses_only_declared_metrics_and_covers_the_issue() -> None:
    dash = json.loads((ROOT / "deploy/grafana/dashboards/segformer-serve.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    declared = _declared_metrics()
    valid = set()
    for name, kind in declared.items():
        if kind == "counter":
            valid.add(name + "_total")
        elif kind == "histogram":
            valid |= {name + "_bucket", name + "_sum", name + "_count"}
        else:
            valid.add(name)
    used = {n for e in exprs for n in re.findall(r"\bsegformer_[a-z_]+", e)}
    assert used, "dashboard queries no segformer_* metric"
    assert used <= valid, f"dashboard uses undeclared metrics: {sorted(used - valid)}"
    # requests, latency percentiles per stage, batch size, queue depth (issue 6)
    joined = "\n".join(exprs)
    for needle in (
        "segformer_requests_total",
        "segformer_stage_duration_seconds_bucket",
        "by (le, stage)",
        "segformer_batch_size",
        "segformer_queue_depth",
    ):
        assert needle in joined, needle
    # datasource uid matches the provisioned one; the provider path matches the compose mount
    ds = _yaml("deploy/grafana/provisioning/datasources/prometheus.yml")["datasources"][0]
    assert {t["datasource"]["uid"] for p in dash["panels"] for t in p.get("targets", [])} == {ds["uid"]}
    provider = _yaml("deploy/grafana/provisioning/dashboards/segformer.yml")["providers"][0]
    grafana_volumes = _yaml("docker-compose.yml")["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in grafana_volumes


def test_dockerignore_keeps_the_context_to_the_install() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {
        "!pyproject.toml",
        "!README.md",
        "!contract/",
        "!model/",
        "!export/",
        "!server/",
        "!client/",
    } <= set(lines)
    assert "**/*.onnx" in lines
