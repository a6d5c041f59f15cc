"""``render(dir)``: the subset of ``kubectl kustomize`` that ``deploy/k8s/`` uses, in plain Python.

No kustomize binary is packaged for Debian or PyPI, so the tests render the overlays themselves. Supported
(and nothing else: anything unknown in a kustomization.yaml is an error, so the subset cannot drift
silently): ``resources`` (files or directories), ``components``, ``namespace``, ``images``
(``name`` -> ``newName``/``newTag``) and ``patches`` with a ``path`` to a strategic-merge patch. The merge
follows Kubernetes' strategic merge for the fields we patch: maps merge, a ``null`` deletes the key, lists
of maps with a ``name`` (containers, env, volumes, volumeMounts, ports, tolerations by ``key``) merge by
that key, other lists are replaced.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

KNOWN_KEYS = {"apiVersion", "kind", "resources", "components", "namespace", "images", "patches"}
MERGE_KEYS = ("name", "key", "containerPort", "mountPath")
CLUSTER_SCOPED = {"Namespace", "ClusterServingRuntime", "ClusterRole", "ClusterRoleBinding"}
Resource = dict[str, Any]


def load_documents(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _merge_key(items: list[Any]) -> str | None:
    for key in MERGE_KEYS:
        if items and all(isinstance(i, dict) and key in i for i in items):
            return key
    return None


def strategic_merge(base: Any, patch: Any) -> Any:
    """``patch`` merged onto ``base`` (neither is modified)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = strategic_merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list):
        key = _merge_key(base + patch)
        if key is None:
            return copy.deepcopy(patch)
        out = copy.deepcopy(base)
        for item in patch:
            match = next((i for i, b in enumerate(out) if b[key] == item[key]), None)
            if match is None:
                out.append(copy.deepcopy(item))
            else:
                out[match] = strategic_merge(out[match], item)
        return out
    return copy.deepcopy(patch)


def _identity(resource: Resource) -> tuple[str, str]:
    return resource["kind"], resource["metadata"]["name"]


def _apply_patch(resources: list[Resource], patch: Resource, where: Path) -> None:
    for i, resource in enumerate(resources):
        if _identity(resource) == _identity(patch):
            resources[i] = strategic_merge(resource, patch)
            return
    raise ValueError(f"{where}: patch target {_identity(patch)} not among the resources")


def _containers(resource: Resource) -> list[Resource]:
    pod = resource.get("spec", {}).get("template", {}).get("spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def _set_image(resource: Resource, image: dict[str, str]) -> None:
    for container in _containers(resource):
        name, _, tag = container["image"].partition(":")
        if name == image["name"]:
            container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag or 'latest')}"


def render(directory: Path) -> list[Resource]:
    """The resources ``kubectl kustomize directory`` would output (in the order they are declared)."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - KNOWN_KEYS
    if unknown:
        raise ValueError(f"{directory}/kustomization.yaml: unsupported fields {sorted(unknown)}")
    resources: list[Resource] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        resources += render(path) if path.is_dir() else load_documents(path)
    for entry in spec.get("components", []):
        component = directory / entry
        part = yaml.safe_load((component / "kustomization.yaml").read_text())
        if part.get("kind") != "Component":
            raise ValueError(f"{component}: not a kustomize Component")
        for item in part.get("resources", []):
            resources += load_documents(component / item)
        for patch in part.get("patches", []):
            for doc in load_documents(component / patch["path"]):
                _apply_patch(resources, doc, component)
    for patch in spec.get("patches", []):
        for doc in load_documents(directory / patch["path"]):
            _apply_patch(resources, doc, directory)
    for image in spec.get("images", []):
        for resource in resources:
            _set_image(resource, image)
    if "namespace" in spec:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = spec["namespace"]
    return resources
