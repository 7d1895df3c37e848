"""What the real API server does to an object of a given type on the way in: names, defaults, checks.

Kept apart from the request handling in `api.py`: name syntax per type,
label syntax, `generateName`, the defaults the real server fills in for pods,
services, namespaces and secrets, and the admission checks an operator runs
into (a pod's service account must exist; a pod's spec is mostly immutable).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from datetime import datetime, timezone
from typing import Any

from kube_apiserver.errors import ApiError, invalid

GENERATE_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
_DNS1123_LABEL_RE = re.compile(rf"^{_DNS1123_LABEL}$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def generate_name(prefix: str) -> str:
    return prefix[:58] + "".join(secrets.choice(GENERATE_NAME_ALPHABET) for _ in range(5))


def _name_causes(kind: str, name: str) -> list[dict[str, str]]:
    if kind in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"):
        ok, message = name not in (".", "..") and "/" not in name and "%" not in name, "may not contain '/' or '%'"
    elif kind == "Namespace":
        ok, message = bool(_DNS1123_LABEL_RE.match(name)) and len(name) <= 63, LABEL_MESSAGE
    elif kind == "Service":  # an RFC 1123 label since Kubernetes 1.34 (RelaxedServiceNameValidation): "1svc" is fine
        ok, message = (
            (False, "must not contain dots")
            if "." in name
            else (
                (False, "must be no more than 63 characters")
                if len(name) > 63
                else (bool(_DNS1123_LABEL_RE.match(name)), LABEL_MESSAGE)
            )
        )
    else:
        ok, message = bool(_DNS1123_SUBDOMAIN.match(name)) and len(name) <= 253, SUBDOMAIN_MESSAGE
    if ok:
        return []
    return [
        {
            "reason": "FieldValueInvalid",
            "field": "metadata.name",
            "message": f'metadata.name: Invalid value: "{name}": {message}',
        }
    ]


def _label_causes(labels: Any) -> list[dict[str, str]]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [
            {"reason": "FieldValueTypeInvalid", "field": "metadata.labels", "message": "metadata.labels: must be a map"}
        ]
    causes = []
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if not (_LABEL_NAME.match(name) and len(name) <= 63) or (
            prefix and not (_DNS1123_SUBDOMAIN.match(prefix) and len(prefix) <= 253)
        ):
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "field": "metadata.labels",
                    "message": f'metadata.labels: Invalid value: "{key}": name part must consist of '
                    "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                }
            )
        if not isinstance(value, str) or not (_LABEL_VALUE.match(value) and len(value) <= 63):
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "field": "metadata.labels",
                    "message": f'metadata.labels: Invalid value: "{value}": a valid label must be an empty '
                    "string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                    "alphanumeric character, and be at most 63 characters",
                }
            )
    return causes


def check_metadata(kind: str, group: str, obj: dict[str, Any]) -> None:
    """Name and label syntax; raises 422 Invalid."""
    metadata = obj["metadata"]
    causes = _name_causes(kind, metadata["name"]) + _label_causes(metadata.get("labels"))
    annotations = metadata.get("annotations")
    if annotations is not None and (
        not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values())
    ):
        causes.append(
            {
                "reason": "FieldValueTypeInvalid",
                "field": "metadata.annotations",
                "message": "metadata.annotations: values must be strings",
            }
        )
    if causes:
        raise invalid(kind, metadata["name"], group, causes)


def _image_pull_policy(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _default_containers(containers: list[dict[str, Any]]) -> None:
    for container in containers:
        container.setdefault("imagePullPolicy", _image_pull_policy(container.get("image", "")))
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        resources = container.setdefault("resources", {})
        if resources.get("limits"):  # requests default to the limits, resource by resource
            resources["requests"] = {**resources["limits"], **(resources.get("requests") or {})}
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")


def default_pod(pod: dict[str, Any]) -> None:
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    _default_containers(spec.get("containers") or [])
    _default_containers(spec.get("initContainers") or [])
    pod["status"] = {"phase": "Pending", "qosClass": _qos_class(spec)}


def _qos_class(spec: dict[str, Any]) -> str:
    containers = spec.get("containers") or []
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        (r.get("limits") or {}).get(k) is not None
        and (r.get("requests") or {}).get(k, (r.get("limits") or {}).get(k)) == (r.get("limits") or {}).get(k)
        for r in resources
        for k in ("cpu", "memory")
    )
    return "Guaranteed" if guaranteed else "Burstable"


def check_pod(pod: dict[str, Any]) -> list[dict[str, str]]:
    """What pod validation requires beyond the schema: containers, each with an image and a name that is an RFC 1123
    label; no negative resources."""
    causes = []
    containers = (pod.get("spec") or {}).get("containers")
    if not containers:
        causes.append(
            {"reason": "FieldValueRequired", "field": "spec.containers", "message": "spec.containers: Required value"}
        )
    for key in ("initContainers", "containers"):
        for index, container in enumerate((pod.get("spec") or {}).get(key) or []):
            name = container.get("name")
            if isinstance(name, str) and not (_DNS1123_LABEL_RE.match(name) and len(name) <= 63):
                field = f"spec.{key}[{index}].name"
                causes.append(
                    {
                        "reason": "FieldValueInvalid",
                        "field": field,
                        "message": f'{field}: Invalid value: "{name}": {LABEL_MESSAGE}',
                    }
                )
    for index, container in enumerate(containers or []):
        if not container.get("image"):
            causes.append(
                {
                    "reason": "FieldValueRequired",
                    "field": f"spec.containers[{index}].image",
                    "message": f"spec.containers[{index}].image: Required value",
                }
            )
        for kind in ("limits", "requests"):
            for name, value in ((container.get("resources") or {}).get(kind) or {}).items():
                if str(value).lstrip().startswith("-"):
                    field = f"spec.containers[{index}].resources.{kind}[{name}]"
                    causes.append(
                        {
                            "reason": "FieldValueInvalid",
                            "field": field,
                            "message": f'{field}: Invalid value: "{value}": must be greater than or equal to 0',
                        }
                    )
    return causes


def _pod_spec_without_mutable_fields(spec: dict[str, Any]) -> dict[str, Any]:
    """A pod spec minus what an update may change (images, activeDeadlineSeconds, tolerations)."""
    stripped = {k: v for k, v in spec.items() if k not in ("activeDeadlineSeconds", "tolerations")}
    for key in ("containers", "initContainers"):
        if key in stripped:
            stripped[key] = [{k: v for k, v in c.items() if k != "image"} for c in stripped[key]]
    return stripped


def check_pod_update(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, str]]:
    if _pod_spec_without_mutable_fields(old.get("spec") or {}) == _pod_spec_without_mutable_fields(
        new.get("spec") or {}
    ):
        return []
    return [
        {
            "reason": "FieldValueForbidden",
            "field": "spec",
            "message": "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
            "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
            "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
            "(allow it to be set to 1 if it was previously negative)",
        }
    ]


class ClusterIPs:
    """Allocates Service cluster IPs from 10.96.0.0/16, as the real allocator does from its range."""

    def __init__(self) -> None:
        self._next = 1

    def allocate(self, taken: set[str]) -> str:
        while True:
            self._next += 1
            address = f"10.96.{self._next // 254}.{self._next % 254 + 1}"
            if address not in taken:
                return address


def default_service(service: dict[str, Any], cluster_ip: str | None) -> None:
    spec = service.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if cluster_ip and spec.get("clusterIP") in (None, ""):
        spec["clusterIP"] = cluster_ip
    if spec.get("clusterIP"):
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        if "port" in port:
            port.setdefault("targetPort", port["port"])
    service["status"] = {"loadBalancer": {}}


def normalize_secret(secret: dict[str, Any]) -> None:
    """`stringData` folds into base64 `data`; `data` must be base64; default type Opaque."""
    secret.setdefault("type", "Opaque")
    data = secret.get("data") or {}
    for key, value in data.items():
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise ApiError(400, "BadRequest", f"illegal base64 data at input byte 0 (data.{key})") from None
    for key, value in (secret.pop("stringData", None) or {}).items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    if data:
        secret["data"] = data
