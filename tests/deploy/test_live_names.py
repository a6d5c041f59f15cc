"""Every metric the autoscaling rules query and every probe path the manifests use exist on a running
server (a real ``segformer-serve`` over the random-weights B0 graph, after one request)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.deploy.manifests import (
    METRIC,
    all_documents,
    only,
    promql_queries,
    selected_labels,
    variants,
)
from tests.server.live import Served, image_bytes

# labels Prometheus attaches at scrape time (target / ServiceMonitor), not the server
SCRAPE_LABELS = {"namespace", "pod", "service", "job", "instance", "container", "endpoint"}
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*?)\})? \S+$", re.MULTILINE)
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@pytest.fixture(scope="module")
def served(random_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(
        tmp_path_factory.mktemp("served"),
        "--model", str(random_b0_onnx), "--sessions", "1", "--intra-op-threads", "1",
    )  # fmt: skip
    try:
        server.wait_ready()
        response = httpx.post(
            f"{server.url}/v1/segment", content=image_bytes(48, 64), headers={"Content-Type": "image/png"}
        )
        assert response.status_code == 200, response.text
        yield server
    finally:
        assert server.stop() == 0, server.log_tail()


def _samples(text: str) -> dict[str, list[dict[str, str]]]:
    """Sample name -> the label sets it is exported with."""
    out: dict[str, list[dict[str, str]]] = {}
    for name, labels in SAMPLE.findall(text):
        out.setdefault(name, []).append(dict(LABEL.findall(labels)))
    return out


def test_autoscaling_metrics_are_exported(served: Served) -> None:
    samples = _samples(served.metrics())
    queries = promql_queries()
    assert len(queries) >= 6
    names = {name for query in queries for name in METRIC.findall(query)}
    assert names >= {"segformer_queue_depth", "segformer_stage_duration_seconds_sum"}
    missing = sorted(n for n in names if n not in samples)
    assert not missing, f"the rules query metrics the server does not export: {missing}"
    for query in queries:
        for metric, label, op, value in selected_labels(query):
            if label in SCRAPE_LABELS:
                continue
            assert op == "=", f"{query}: test only knows '=' for server labels"
            exported = {labels.get(label) for labels in samples[metric]}
            assert value in exported, f"{metric}{{{label}={value!r}}} not exported (has {sorted(exported)})"


def test_probe_and_scrape_paths_answer(served: Served, tmp_path: Path) -> None:
    paths: set[str] = set()
    for resources in variants(tmp_path).values():
        pod = only(resources, "Deployment")["spec"]["template"]["spec"]
        for container in pod["containers"]:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                paths.add(container[probe]["httpGet"]["path"])
        paths |= {e["path"] for e in only(resources, "ServiceMonitor")["spec"]["endpoints"]}
    for _, doc in all_documents():
        if doc["kind"] == "ClusterServingRuntime":
            for container in doc["spec"]["containers"]:
                paths |= {container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")}
            paths.add(doc["spec"]["annotations"]["prometheus.kserve.io/path"])
    assert paths == {"/healthz", "/readyz", "/metrics"}
    for path in sorted(paths):
        response = httpx.get(served.url + path, timeout=10)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:200]}"
