"""The RayCluster the Helm chart `charts/ray` renders from a values file, as `helm template` renders it.

The chart's `raycluster.yaml` template is the reference; this is its mirror in Python, so that `ray-operator
render` and `ray-operator sandbox` turn a values file into its RayCluster without a `helm` binary. A values
file is merged over the chart's values.yaml the way Helm merges it (a short file says only what differs; `null`
removes a default, such as a podType). tests/chart holds the mirror equal to `helm template` of the chart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from autoscaler_bridge.names import API_GROUP, API_VERSION, KIND, RAY_CONTAINER_NAME
from ray_operator.bundled import chart_values

RAY_CONTAINER_PORTS = [
    {"name": "gcs", "containerPort": 6379},
    {"name": "client", "containerPort": 10001},
    {"name": "dashboard", "containerPort": 8265},
    {"name": "serve", "containerPort": 8000},
]


def is_values_file(document: Any) -> bool:
    """A Helm values file of this chart: `podTypes` is a map keyed by name (a RayCluster's is a list)."""
    return isinstance(document, Mapping) and isinstance(document.get("podTypes"), Mapping)


def coalesce(defaults: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` over `defaults`, as Helm merges a values file over a chart's: maps merge key by key, anything else
    replaces, and `null` removes the default."""
    merged = dict(defaults)
    for key, value in values.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = coalesce(merged[key], value)
        else:
            merged[key] = value
    return merged


def _quantity(pod_type: Mapping[str, Any], key: str, legacy_key: str, default: Any) -> Any:
    """`CPU`/`GPU` (later legacy charts) win over `numCPU`/`numGPU` (earlier ones); a fraction becomes a string, as
    the chart quotes it (a quantity is an integer or a string): 0.5 is "0.5", 1.0 is 1."""
    value = pod_type[key] if key in pod_type else pod_type.get(legacy_key, default)
    if isinstance(value, float) and math.isfinite(value):
        return int(value) if value.is_integer() else str(value)
    return value


def _pod_config(values: Mapping[str, Any], pod_type: Mapping[str, Any]) -> dict[str, Any]:
    cpu = _quantity(pod_type, "CPU", "numCPU", 1)
    gpu = _quantity(pod_type, "GPU", "numGPU", 0)
    memory = pod_type.get("memory", "512Mi")
    limits: dict[str, Any] = {"cpu": cpu, "memory": memory}
    if gpu:
        limits["nvidia.com/gpu"] = gpu
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}}],
        "containers": [
            {
                "name": RAY_CONTAINER_NAME,
                "image": pod_type.get("image") or values["image"],
                "imagePullPolicy": "IfNotPresent",
                "ports": [dict(p) for p in RAY_CONTAINER_PORTS],
                "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
                "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": limits},
            }
        ],
    }
    if pod_type.get("nodeSelector"):
        spec["nodeSelector"] = pod_type["nodeSelector"]
    if pod_type.get("tolerations"):
        spec["tolerations"] = pod_type["tolerations"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": spec}


def raycluster_from_values(values: Mapping[str, Any], name: str, namespace: str | None = None) -> dict[str, Any]:
    """The RayCluster the chart renders for release `name` (in `namespace`) from the values file `values`; a
    required key it removed is a ValueError naming it."""
    values = coalesce(chart_values(), values)
    missing = [key for key in ("image", "headPodType", "podTypes") if not values.get(key)]
    if missing:
        raise ValueError(f"the values file lacks {', '.join(missing)}")
    if not isinstance(values["podTypes"], Mapping):
        raise ValueError(f"podTypes: {values['podTypes']!r:.60} is not a map")
    pod_types = []
    # Helm ranges over a map in key order; its keys are strings (YAML's other keys become strings in Helm too).
    for type_name, pod_type in sorted((str(k), v) for k, v in values["podTypes"].items()):
        if not isinstance(pod_type, Mapping):
            raise ValueError(f"podTypes.{type_name}: {pod_type!r:.60} is not a map")
        entry: dict[str, Any] = {
            "name": type_name,
            "minWorkers": pod_type.get("minWorkers", 0),
            "maxWorkers": pod_type.get("maxWorkers", 0),
        }
        if "drainTimeoutSeconds" in pod_type:
            entry["drainTimeoutSeconds"] = pod_type["drainTimeoutSeconds"]
        if pod_type.get("rayResources"):
            entry["rayResources"] = pod_type["rayResources"]
        entry["podConfig"] = _pod_config(values, pod_type)
        pod_types.append(entry)
    max_workers = values.get("maxWorkers")
    if max_workers is None:  # what the chart's template adds up; a count that is not a whole number is a problem
        counts = [p["maxWorkers"] for p in pod_types]
        max_workers = sum(counts) if all(isinstance(c, int) and not isinstance(c, bool) for c in counts) else None
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            **({"maxWorkers": max_workers} if max_workers is not None else {}),
            "upscalingSpeed": values.get("upscalingSpeed", 1.0),
            "idleTimeoutMinutes": values.get("idleTimeoutMinutes", 5),
            "rayAuthentication": values.get("rayAuthentication", "token"),
            "headPodDisruptionBudget": values.get("headPodDisruptionBudget", True),
            "headPodType": values["headPodType"],
            "podTypes": pod_types,
        },
    }
