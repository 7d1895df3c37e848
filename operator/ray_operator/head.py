"""Where the operator makes a cluster's head Service, head pod and the head's PodDisruptionBudget. Workers are the
autoscaler's (autoscaler_bridge.node_provider, through autoscaler_bridge.cluster_pods, which the operator also uses
when it restarts a cluster); only this module makes heads."""

from __future__ import annotations

import json
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from autoscaler_bridge.cluster_config import head_tags
from autoscaler_bridge.kube_client import KubeCalls
from autoscaler_bridge.names import head_service_name
from autoscaler_bridge.ray_pod import build_head_disruption_budget, build_head_service, build_ray_pod
from autoscaler_bridge.watch_cache import WatchCache


def create_head_service(calls: KubeCalls, config: dict[str, Any], services: WatchCache) -> None:
    """The head Service of a cluster the cache shows without one (one made meanwhile is no error)."""
    head = config["available_node_types"][config["head_node_type"]]["node_config"]
    service = build_head_service(config["provider"], config["cluster_name"], head)
    try:
        created: Any = calls(
            calls.core.create_namespaced_service, config["provider"]["namespace"], service, _preload_content=False
        )
    except ApiException as error:
        if error.status != 409:
            raise
        return
    services.put(json.loads(created.data))


def keep_head_budget(calls: KubeCalls, config: dict[str, Any], budgets: WatchCache) -> bool:
    """The head's PodDisruptionBudget made, or deleted when the cluster opts out (its provider's
    head_disruption_budget); whether it was made. One made or deleted meanwhile is no error."""
    namespace, name = config["provider"]["namespace"], head_service_name(config["cluster_name"])
    policy = kubernetes.client.PolicyV1Api(calls.client)
    if not config["provider"]["head_disruption_budget"]:
        try:
            calls(policy.delete_namespaced_pod_disruption_budget, name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise
        budgets.discard(namespace, name)
        return False
    budget = build_head_disruption_budget(config["provider"], config["cluster_name"])
    try:
        created: Any = calls(policy.create_namespaced_pod_disruption_budget, namespace, budget, _preload_content=False)
    except ApiException as error:
        if error.status != 409:
            raise
        return True
    budgets.put(json.loads(created.data))
    return True


MAX_FIELDS = 5  # of a refused body's fields, named in its refusal; more are counted


class HeadPodRefused(Exception):
    """The head pod made of the RayCluster's head podType was refused as invalid: the spec's to fix, no failure of the
    operator."""


def refusal(error: Exception) -> str | None:
    """Why a body was refused as invalid, by the API server (400, 422) or by the client before sending it (kubernetes
    37 checks a body against its models: a ValueError, pydantic's, listing each field); None for any other failure."""
    if isinstance(error, ApiException):
        if error.status not in (400, 422):
            return None
        try:
            return str(json.loads(error.body or "")["message"])
        except (TypeError, ValueError, KeyError):
            return str(error.reason)
    if not isinstance(error, ValueError):
        return None
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return str(error)
    fields = [f"{_field(e['loc'])}: {e['msg']}" for e in errors()]
    more = [f"and {len(fields) - MAX_FIELDS} more"] if len(fields) > MAX_FIELDS else []
    return "; ".join(fields[:MAX_FIELDS] + more)


def _field(location: tuple[Any, ...]) -> str:
    """A field as pydantic locates it in a call's arguments, (2, "spec", "containers", 0, "image"), as a path:
    spec.containers[0].image."""
    path = ""
    for part in location[1:]:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def create_head_pod(calls: KubeCalls, config: dict[str, Any], pods: WatchCache) -> dict[str, Any]:
    """A head pod for a cluster the cache shows without one; raises HeadPodRefused if it is invalid."""
    node_type = config["available_node_types"][config["head_node_type"]]
    pod = build_ray_pod(
        config["provider"], config["cluster_name"], node_type["node_config"], head_tags(config), node_type["resources"]
    )
    try:
        created: Any = calls(
            calls.core.create_namespaced_pod, config["provider"]["namespace"], pod, _preload_content=False
        )
    except (ApiException, ValueError) as error:
        why = refusal(error)
        if why is None:
            raise
        raise HeadPodRefused(f"the head pod of podType {config['head_node_type']} is refused: {why}") from error
    body: dict[str, Any] = json.loads(created.data)
    pods.put(body)
    return body
