"""What ``deploy/k8s/`` holds, for the deploy tests: variants, documents, schemas and the rules' metrics."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.kustomize import Resource, load_documents, render

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = Path(__file__).resolve().parent / "crd_schemas"
ADAPTER_VALUES = K8S / "components" / "hpa" / "prometheus-adapter-values.yaml"
# files under deploy/k8s that are not Kubernetes objects
NOT_MANIFESTS = {"kustomization.yaml", ADAPTER_VALUES.name}
CRD_KINDS = {"ServiceMonitor", "ScaledObject", "ClusterServingRuntime", "InferenceService"}
METRIC = re.compile(r"\b(segformer_[a-z0-9_]+)\b")
SELECTOR = re.compile(r"\b(segformer_[a-z0-9_]+)\{([^}]*)\}")
LABEL_MATCH = re.compile(r'(\w+)\s*(=~|!=|!~|=)\s*"([^"]*)"')


def variants(tmp: Path) -> dict[str, list[Resource]]:
    """Every way docs/deploy.md says to install: the overlays as shipped, and with the optional
    components swapped in (KEDA instead of the HPA, the model from a URL)."""
    out = {name: render(K8S / "overlays" / name) for name in ("gpu", "cpu")}
    for name, extra in (("gpu-keda-url", ["keda", "model-url"]), ("cpu-keda", ["keda"])):
        overlay = K8S / "overlays" / name.split("-")[0]
        spec = yaml.safe_load((overlay / "kustomization.yaml").read_text())
        spec["resources"] = [str(overlay / r) for r in spec["resources"]]
        spec["patches"] = [{"path": str(overlay / p["path"])} for p in spec["patches"]]
        spec["components"] = [str(K8S / "components" / c) for c in ("monitoring", *extra)]
        folder = tmp / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "kustomization.yaml").write_text(yaml.safe_dump(spec))
        out[name] = render(folder)
    return out


def patch_files() -> set[Path]:
    """Strategic-merge patches named by a kustomization (partial objects: valid once rendered)."""
    return {
        (k.parent / patch["path"]).resolve()
        for k in K8S.rglob("kustomization.yaml")
        for patch in yaml.safe_load(k.read_text()).get("patches", [])
    }


def manifest_files() -> list[Path]:
    """The complete objects under deploy/k8s (not kustomizations, patches or Helm values)."""
    patches = patch_files()
    return sorted(
        p for p in K8S.rglob("*.yaml") if p.name not in NOT_MANIFESTS and p.resolve() not in patches
    )


def all_documents() -> list[tuple[Path, Resource]]:
    return [(path, doc) for path in manifest_files() for doc in load_documents(path)]


def only(resources: list[Resource], kind: str, name: str | None = None) -> Resource:
    found = [r for r in resources if r["kind"] == kind and name in (None, r["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def strict(schema: Any) -> Any:
    """A CRD structural schema that rejects unknown fields like ``kubectl apply --validate=strict``."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items() if k not in ("properties",)}
    if "properties" in schema:
        out["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


def crd_schema(resource: Resource) -> dict[str, Any]:
    group, _, version = resource["apiVersion"].partition("/")
    path = SCHEMAS / f"{group}_{resource['kind']}_{version}.json.gz"
    schema = json.loads(gzip.decompress(path.read_bytes()))
    # the API server fills these in for every object; the stored schemas type metadata loosely
    schema.setdefault("properties", {}).setdefault("apiVersion", {"type": "string"})
    return strict(schema)


def adapter_rules() -> list[dict[str, Any]]:
    return yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]


def promql_queries() -> list[str]:
    """Every PromQL text in the autoscaling rules (adapter series/metrics queries, KEDA triggers)."""
    queries = [q for rule in adapter_rules() for q in (rule["seriesQuery"], rule["metricsQuery"])]
    for _, doc in all_documents():
        if doc["kind"] == "ScaledObject":
            queries += [t["metadata"]["query"] for t in doc["spec"]["triggers"] if t["type"] == "prometheus"]
    return queries


def selected_labels(query: str) -> list[tuple[str, str, str, str]]:
    """(metric, label, operator, value) for every ``metric{label="value"}`` matcher in ``query``
    (adapter template placeholders like ``<<.LabelMatchers>>`` are skipped)."""
    return [
        (metric, label, op, value)
        for metric, body in SELECTOR.findall(query)
        for label, op, value in LABEL_MATCH.findall(body)
    ]
