"""deploy/k8s/ validated offline: core kinds with kubernetes-validate (strict), CRD kinds with jsonschema
against the published CRD schemas (tests/deploy/crd_schemas/), and the wiring between the objects."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from server.flags import load_settings
from server.settings import Settings
from tests.deploy.kustomize import Resource
from tests.deploy.manifests import (
    CRD_KINDS,
    adapter_rules,
    all_documents,
    crd_schema,
    manifest_files,
    only,
    variants,
)

# the oldest Kubernetes we claim (autoscaling/v2, policy/v1, appProtocol, probes as used) and the newest
K8S_VERSIONS = ("1.29.0", "1.37.0")
GPU = "nvidia.com/gpu"


def _dockerfile() -> str:
    return (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()


def _image_uid() -> int:
    match = re.search(r"^ARG UID=(\d+)$", _dockerfile(), re.MULTILINE)
    assert match, "the Dockerfile sets ARG UID"
    return int(match.group(1))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Resource]]:
    return variants(tmp_path_factory.mktemp("kustomize"))


def _validate(resource: Resource) -> None:
    if resource["kind"] in CRD_KINDS:
        jsonschema.Draft202012Validator(crd_schema(resource)).validate(resource)
        return
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(resource, version, strict=True)


def test_every_manifest_file_is_valid() -> None:
    documents = all_documents()
    assert len(manifest_files()) >= 10 and {d["kind"] for _, d in documents} >= CRD_KINDS
    for path, doc in documents:
        try:
            _validate(doc)
        except jsonschema.ValidationError as exc:
            pytest.fail(f"{path}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_every_rendered_variant_is_valid(rendered: dict[str, list[Resource]]) -> None:
    for name, resources in rendered.items():
        for doc in resources:
            try:
                _validate(doc)
            except jsonschema.ValidationError as exc:
                pytest.fail(
                    f"{name}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} {list(exc.path)}"
                )
        assert {d["metadata"].get("namespace") for d in resources} == {"segformer"}


def test_kubernetes_validate_cli_strict(rendered: dict[str, list[Resource]], tmp_path: Path) -> None:
    """The command line CI users run by hand: ``kubernetes-validate --strict`` on the rendered overlays."""
    files = []
    for name in ("gpu", "cpu"):
        core = [doc for doc in rendered[name] if doc["kind"] not in CRD_KINDS]
        files.append(tmp_path / f"{name}.yaml")
        files[-1].write_text(yaml.safe_dump_all(core))
    command = [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", *map(str, files)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_strict_validation_rejects_unknown_fields() -> None:
    """The validators used above really are strict (a typo would not pass silently)."""
    for _, doc in all_documents():
        if doc["kind"] in ("Deployment", "ServiceMonitor", "InferenceService"):
            bad = {**doc, "spec": {**doc["spec"], "replicaz": 1}}
            with pytest.raises(jsonschema.ValidationError):
                _validate(bad)


def _pod(resources: list[Resource]) -> dict:
    return only(resources, "Deployment")["spec"]["template"]["spec"]


def _server(resources: list[Resource]) -> dict:
    return next(c for c in _pod(resources)["containers"] if c["name"] == "server")


def test_gpu_and_cpu_variants(rendered: dict[str, list[Resource]]) -> None:
    gpu, cpu = _server(rendered["gpu"]), _server(rendered["cpu"])
    assert gpu["resources"]["limits"][GPU] == 1 and gpu["resources"]["requests"][GPU] == 1
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in _pod(rendered["gpu"])["tolerations"]
    assert _pod(rendered["gpu"])["nodeSelector"]
    assert {"name": "SEGFORMER_DEVICE", "value": "cuda"} in gpu["env"]
    assert GPU not in cpu["resources"]["limits"] and "tolerations" not in _pod(rendered["cpu"])
    assert {"name": "SEGFORMER_DEVICE", "value": "cpu"} in cpu["env"]
    assert gpu["image"].endswith(":gpu") and cpu["image"].endswith(":cpu")


def test_pod_lifecycle_probes_and_security(rendered: dict[str, list[Resource]]) -> None:
    for name, resources in rendered.items():
        pod, server = _pod(resources), _server(resources)
        config = only(resources, "ConfigMap", "segformer-serve-config")["data"]
        assert server["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert server["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        startup = server["startupProbe"]
        assert startup["httpGet"]["path"] == "/readyz"
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, "startup covers load + warm-up"
        pause = int(server["lifecycle"]["preStop"]["exec"]["command"][1])
        graceful = float(config["SEGFORMER_GRACEFUL_TIMEOUT_S"])
        assert pod["terminationGracePeriodSeconds"] > pause + graceful, name
        assert pause >= 2 * server["readinessProbe"]["periodSeconds"], "endpoints drop the pod first"
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == _image_uid()
        sc = server["securityContext"]
        assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
        mounts = {m["mountPath"]: m for m in server["volumeMounts"]}
        assert mounts["/models"]["readOnly"] and "/tmp" in mounts
        # ONNX Runtime writes under $HOME/.cache; the server's cache dir lives there too
        assert "/home/segformer/.cache" in mounts and config["SEGFORMER_CACHE_DIR"].startswith(
            "/home/segformer/.cache/"
        )
        assert config["SEGFORMER_MODEL"].startswith("/models/")
        strategy = only(resources, "Deployment")["spec"]["strategy"]["rollingUpdate"]
        assert strategy == {"maxSurge": 1, "maxUnavailable": 0}


def test_model_from_url_replaces_the_volume(rendered: dict[str, list[Resource]]) -> None:
    pod = _pod(rendered["gpu-keda-url"])
    models = next(v for v in pod["volumes"] if v["name"] == "models")
    assert "emptyDir" in models and "persistentVolumeClaim" not in models
    (init,) = pod["initContainers"]
    assert init["image"] == _server(rendered["gpu-keda-url"])["image"]
    assert "/models/model.onnx" in init["command"][-1]


def test_config_keys_are_server_settings(rendered: dict[str, list[Resource]]) -> None:
    fields = {"SEGFORMER_" + name.upper() for name in Settings.model_fields}
    for resources in rendered.values():
        config = only(resources, "ConfigMap", "segformer-serve-config")["data"]
        env = {e["name"] for e in _server(resources).get("env", [])}
        assert set(config) | env <= fields, (set(config) | env) - fields
        assert config["SEGFORMER_PORT"] == "8000" and config["SEGFORMER_GRPC_PORT"] == "50051"


def test_pod_environment_is_valid_settings(
    rendered: dict[str, list[Resource]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server parses the pod's environment (ConfigMap + container env) as it would at start."""
    for resources in rendered.values():
        environment = dict(only(resources, "ConfigMap", "segformer-serve-config")["data"])
        environment |= {e["name"]: e["value"] for e in _server(resources).get("env", [])}
        with monkeypatch.context() as patch:
            for name, value in environment.items():
                patch.setenv(name, value)
            settings = load_settings([])
        assert settings.port == 8000 and settings.grpc_port == 50051
        assert [str(m) for m in settings.model] == [environment["SEGFORMER_MODEL"]]
        assert settings.device == environment["SEGFORMER_DEVICE"]


def test_service_pdb_and_monitor_select_the_pods(rendered: dict[str, list[Resource]]) -> None:
    resources = rendered["gpu"]
    labels = only(resources, "Deployment")["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"]: p["containerPort"] for p in _server(resources)["ports"]}
    assert ports == {"http": 8000, "grpc": 50051}
    assert "EXPOSE 8000 50051" in _dockerfile()
    service = only(resources, "Service", "segformer-serve")
    assert {p["name"] for p in service["spec"]["ports"]} == {"http", "grpc"}
    assert all(p["targetPort"] in ports for p in service["spec"]["ports"])
    for svc in (r for r in resources if r["kind"] == "Service"):
        assert svc["spec"]["selector"].items() <= labels.items()
    assert only(resources, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    monitor = only(resources, "ServiceMonitor")["spec"]
    selected = [
        s
        for s in resources
        if s["kind"] == "Service"
        and monitor["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in selected] == ["segformer-serve"]
    assert monitor["endpoints"][0]["port"] == "http" and monitor["endpoints"][0]["path"] == "/metrics"


def test_autoscalers_target_the_deployment_and_use_adapter_metrics(
    rendered: dict[str, list[Resource]],
) -> None:
    hpa = only(rendered["gpu"], "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "segformer-serve"}
    served = {rule["name"]["as"] for rule in adapter_rules()}
    assert {m["pods"]["metric"]["name"] for m in hpa["metrics"]} == served
    for rule in adapter_rules():
        assert re.search(rule["name"]["matches"], rule["seriesQuery"].split("{")[0])
    keda = only(rendered["gpu-keda-url"], "ScaledObject")["spec"]
    assert keda["scaleTargetRef"]["name"] == "segformer-serve"
    assert not any(r["kind"] == "HorizontalPodAutoscaler" for r in rendered["gpu-keda-url"])
    assert keda["minReplicaCount"] == hpa["minReplicas"] and keda["maxReplicaCount"] == hpa["maxReplicas"]


def test_kserve_runtime_serves_the_inference_service() -> None:
    docs = {
        d["kind"]: d for _, d in all_documents() if d["kind"] in ("ClusterServingRuntime", "InferenceService")
    }
    runtime, isvc = docs["ClusterServingRuntime"], docs["InferenceService"]
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"] and model["protocolVersion"] == "v2"
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert "v2" in runtime["spec"]["protocolVersions"]
    (container,) = runtime["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert isvc["spec"]["predictor"]["terminationGracePeriodSeconds"] > 10 + 30
    # KServe fills {{.Name}} with the InferenceService's name; the server must accept the arguments
    args = [a.replace("{{.Name}}", isvc["metadata"]["name"]) for a in container["args"]]
    settings = load_settings(args)
    assert settings.model == [f"{isvc['metadata']['name']}=/mnt/models/model.onnx"]
    assert (settings.port, settings.grpc_port) == (8080, 8081)
    assert [p["containerPort"] for p in container["ports"]] == [settings.port]


def test_manifests_live_under_deploy_k8s() -> None:
    assert manifest_files() and all(
        Path(p).is_relative_to(Path(__file__).resolve().parents[2] / "deploy" / "k8s")
        for p in manifest_files()
    )
