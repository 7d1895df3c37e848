"""Where a RayCluster becomes the Ray autoscaler cluster config that runs it, and where a pod is checked against it.

`autoscaler_config()` is a pure function: RayCluster dict in, config dict out,
or `InvalidRayCluster` listing every problem — and nothing else, whatever the
RayCluster holds (a failure the checks did not foresee is a listed problem too). The config is complete as
`StandardAutoscaler` reads it (Ray does not fill in defaults for a monitor's
config), and it passes Ray's own `validate_config`. Beside it, the launch-config
hash every pod carries (`ray-launch-config`, as Ray's autoscaler computes it):
a pod whose hash differs from its podType's in the config is outdated.

Ray itself runs no commands on our nodes (`disable_node_updaters`): each pod
starts Ray by itself. The commands it runs and the cluster's identity
therefore travel in the `provider` section, the only part of the config the
node provider is given.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ray.autoscaler._private.util import hash_launch_conf
from ray.autoscaler.tags import (
    NODE_KIND_HEAD,
    STATUS_UNINITIALIZED,
    TAG_RAY_LAUNCH_CONFIG,
    TAG_RAY_NODE_KIND,
    TAG_RAY_NODE_NAME,
    TAG_RAY_NODE_STATUS,
    TAG_RAY_USER_NODE_TYPE,
)

from autoscaler_bridge import names, ray_auth
from autoscaler_bridge.pod_resources import pod_type_resources, ray_container_index
from autoscaler_bridge.validation import InvalidRayCluster, Problem, validate_raycluster

# Keys StandardAutoscaler reads unconditionally; they stay empty because no
# updater runs (Ray's KubeRay converter sets the same).
_NO_UPDATER_FIELDS: dict[str, Any] = {
    "file_mounts": {},
    "cluster_synced_files": [],
    "file_mounts_sync_continuously": False,
    "initialization_commands": [],
    "setup_commands": [],
    "head_setup_commands": [],
    "worker_setup_commands": [],
    "head_start_ray_commands": [],
    "worker_start_ray_commands": [],
    "auth": {},
}


def setup_commands(pod_type: Mapping[str, Any]) -> list[str]:
    """A podType's setup commands (`setupCommands` is the legacy alias of `workerSetupCommands`)."""
    return list(pod_type.get("workerSetupCommands") or pod_type.get("setupCommands") or [])


def _node_config(pod_type: Mapping[str, Any], mode: str, cluster_name: str) -> dict[str, Any]:
    """The podType's pod template with the Ray authentication variables in its Ray container: part of the
    template, so that changing the mode restarts the cluster (the head's launch config changes)."""
    node_config = copy.deepcopy(dict(pod_type["podConfig"]))
    container = node_config["spec"]["containers"][ray_container_index(node_config)]
    container["env"] = list(container.get("env") or []) + ray_auth.auth_env(mode, cluster_name, node_config)
    return node_config


def _node_type(pod_type: Mapping[str, Any], mode: str, cluster_name: str) -> dict[str, Any]:
    return {
        "node_config": _node_config(pod_type, mode, cluster_name),
        "resources": pod_type_resources(pod_type),
        "min_workers": pod_type.get("minWorkers", 0),
        "max_workers": pod_type.get("maxWorkers", 0),
    }


def _owner(metadata: Mapping[str, Any]) -> dict[str, str]:
    owner = {
        "apiVersion": f"{names.API_GROUP}/{names.API_VERSION}",
        "kind": names.KIND,
        "name": metadata["name"],
    }
    if metadata.get("uid"):
        owner["uid"] = metadata["uid"]
    return owner


def autoscaler_config(
    raycluster: Mapping[str, Any],
    max_pending_pods: int = names.DEFAULT_MAX_PENDING_PODS,
    pending_timeout_seconds: float = names.DEFAULT_PENDING_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """The Ray autoscaler cluster config for a RayCluster, with the operator's bound on Pending pods; raises
    InvalidRayCluster. Exactly what the operator writes for the cluster's autoscaler."""
    problems = validate_raycluster(raycluster)
    if problems:
        raise InvalidRayCluster(problems)
    try:
        return _config(raycluster, max_pending_pods, pending_timeout_seconds)
    except Exception as error:  # noqa: BLE001 - a RayCluster is input: it is refused, never a crash
        raise InvalidRayCluster([Problem("spec", f"cannot become an autoscaler config: {error!r}"[:500])]) from error


def _config(raycluster: Mapping[str, Any], max_pending_pods: int, pending_timeout_seconds: float) -> dict[str, Any]:
    metadata, spec = raycluster["metadata"], raycluster["spec"]
    pod_types = spec["podTypes"]
    head_commands = list(spec.get("headStartRayCommands") or names.DEFAULT_HEAD_START_RAY_COMMANDS)
    worker_commands = list(spec.get("workerStartRayCommands") or names.DEFAULT_WORKER_START_RAY_COMMANDS)
    mode = ray_auth.spec_mode(raycluster)
    head = next(p for p in pod_types if p["name"] == spec["headPodType"])
    max_workers = spec.get("maxWorkers")
    if max_workers is None:
        max_workers = sum(p.get("maxWorkers", 0) for p in pod_types)
    return {
        "cluster_name": metadata["name"],
        "max_workers": max_workers,
        "upscaling_speed": spec.get("upscalingSpeed", names.DEFAULT_UPSCALING_SPEED),
        "idle_timeout_minutes": spec.get("idleTimeoutMinutes", names.DEFAULT_IDLE_TIMEOUT_MINUTES),
        "head_node_type": spec["headPodType"],
        "available_node_types": {p["name"]: _node_type(p, mode, metadata["name"]) for p in pod_types},
        "provider": {
            "type": "external",
            "module": names.PROVIDER_CLASS,
            "namespace": metadata.get("namespace") or "default",
            "use_internal_ips": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": False,
            "owner": _owner(metadata),
            "head_start_ray_commands": head_commands,
            "worker_start_ray_commands": worker_commands,
            "setup_commands": {p["name"]: setup_commands(p) for p in pod_types if setup_commands(p)},
            "head_service_ports": copy.deepcopy(list(spec.get("headServicePorts") or [])),
            # How the autoscaler authenticates to the head: the mode the head's Ray runs in.
            "ray_auth_mode": ray_auth.pod_mode(mode, head["podConfig"]),
            # Launches held back past this many Pending pods of a podType, or one Pending this long (the node provider).
            "max_pending_pods": max_pending_pods,
            "pending_timeout_seconds": pending_timeout_seconds,
            # How long each podType's deleted workers drain (ray_pod; the autoscaler's idle drains use it too).
            "drain_seconds": {p["name"]: p.get("drainTimeoutSeconds", names.DEFAULT_DRAIN_SECONDS) for p in pod_types},
            # Whether the head pod has a PodDisruptionBudget (the operator keeps it, ray_pod builds it).
            "head_disruption_budget": spec.get("headPodDisruptionBudget", True),
        },
        **copy.deepcopy(_NO_UPDATER_FIELDS),
    }


def launch_hash(config: Mapping[str, Any], node_type: str) -> str:
    """The launch-config hash of a podType's pods, as Ray's autoscaler computes it for the pods it launches."""
    return hash_launch_conf(config["available_node_types"][node_type]["node_config"], config.get("auth", {}))


def head_tags(config: Mapping[str, Any]) -> dict[str, str]:
    """The autoscaler's tags (the pod's labels) for the head pod of a cluster config."""
    head_type = config["head_node_type"]
    return {
        TAG_RAY_NODE_KIND: NODE_KIND_HEAD,
        TAG_RAY_USER_NODE_TYPE: head_type,
        TAG_RAY_NODE_NAME: f"ray-{config['cluster_name']}-head",
        TAG_RAY_NODE_STATUS: STATUS_UNINITIALIZED,
        TAG_RAY_LAUNCH_CONFIG: launch_hash(config, head_type),
    }


def outdated(config: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    """Whether a pod was made from another config than this one for its podType (or its podType is gone)."""
    labels = pod["metadata"].get("labels") or {}
    node_type = labels.get(TAG_RAY_USER_NODE_TYPE)
    if not isinstance(node_type, str) or node_type not in config["available_node_types"]:
        return True
    return bool(labels.get(TAG_RAY_LAUNCH_CONFIG) != launch_hash(config, node_type))
