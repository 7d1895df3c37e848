"""Where a pod's projected volumes become files, as a kubelet makes them: the ServiceAccount token (a
TokenRequest bound to the pod), ConfigMap keys (the cluster's CA in `kube-root-ca.crt`) and downward API fields
(the namespace) — what the API server's ServiceAccount admission mounts at
/var/run/secrets/kubernetes.io/serviceaccount. Other volume kinds are not mounted. And the other things a
kubelet reads from the API before it starts containers: the Secret and ConfigMap keys their env takes."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import kubernetes

from pod_runtime.containers import Reference, env_references, field_value

DEFAULT_TOKEN_SECONDS = 3607  # what the ServiceAccount admission asks for


def projected_mounts(pod: dict[str, Any], container: dict[str, Any]) -> list[tuple[str, str]]:
    """(volume name, mount path) of each projected volume the container mounts, in its order."""
    projected = {v["name"] for v in (pod.get("spec") or {}).get("volumes") or [] if v.get("projected")}
    return [(m["name"], m["mountPath"]) for m in container.get("volumeMounts") or [] if m.get("name") in projected]


def write_projected(core: kubernetes.client.CoreV1Api, pod: dict[str, Any], volume_name: str, directory: Path) -> None:
    """The files of projected volume `volume_name` in `directory` (created; 0644 files, as a kubelet's defaultMode).
    Raises ApiException when a source cannot be read (e.g. the ServiceAccount does not exist yet)."""
    metadata = pod["metadata"]
    [volume] = [v for v in pod["spec"]["volumes"] if v["name"] == volume_name]
    files: dict[str, str] = {}
    for source in volume["projected"].get("sources") or []:
        if "serviceAccountToken" in source:
            wanted = source["serviceAccountToken"]
            spec: dict[str, Any] = {
                "expirationSeconds": wanted.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": metadata["name"], "uid": metadata["uid"]},
            }
            if wanted.get("audience"):
                spec["audiences"] = [wanted["audience"]]
            review = core.create_namespaced_service_account_token(
                pod["spec"].get("serviceAccountName") or "default", metadata["namespace"], {"spec": spec}
            )
            files[wanted["path"]] = review.status.token
        elif "configMap" in source:
            config_map = core.read_namespaced_config_map(source["configMap"]["name"], metadata["namespace"])
            data = config_map.data or {}
            for item in source["configMap"].get("items") or [{"key": k, "path": k} for k in data]:
                files[item["path"]] = data[item["key"]]
        elif "downwardAPI" in source:
            for item in source["downwardAPI"].get("items") or []:
                files[item["path"]] = field_value(pod, item["fieldRef"]["fieldPath"])
    directory.mkdir(parents=True, exist_ok=True)
    for path, content in files.items():
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        os.chmod(target, 0o644)


class MissingReference(Exception):
    """A Secret or ConfigMap key a container needs is not there: the container cannot be configured yet."""


def read_references(core: kubernetes.client.CoreV1Api, pod: dict[str, Any]) -> dict[Reference, str]:
    """The values of the Secret and ConfigMap keys the pod's env takes; raises MissingReference with the kubelet's
    words for one that is required and not there."""
    namespace = pod["metadata"]["namespace"]
    values: dict[Reference, str] = {}
    for (kind, name, key), optional in env_references(pod):
        try:
            if kind == "secret":
                data = {
                    k: base64.b64decode(v).decode()
                    for k, v in (core.read_namespaced_secret(name, namespace).data or {}).items()
                }
            else:
                data = dict(core.read_namespaced_config_map(name, namespace).data or {})
        except kubernetes.client.exceptions.ApiException as error:
            if error.status != 404:
                raise
            if optional:
                continue
            raise MissingReference(f'{kind} "{name}" not found') from error
        if key in data:
            values[(kind, name, key)] = data[key]
        elif not optional:
            raise MissingReference(f"couldn't find key {key} in {kind.capitalize()} {namespace}/{name}")
    return values
