"""Where the operator sees what it reconciles: watch-fed caches of the RayClusters, of every cluster's pods, of its
head Service and of its head's PodDisruptionBudget, one watch per kind for every cluster it manages (all but the
RayClusters label-selected to Ray's). They are the operator's one way in: each change of a RayCluster is handed to
`on_raycluster`, each change of one of a cluster's objects to `on_change(namespace, cluster)`. Nothing is listed or
created to learn whether it exists; what the operator itself just made or deleted is in the caches at once. Every
replica caches every RayCluster, pod, Service and budget (any cluster may become its own): only what it reads of
each is kept (no managedFields, of a pod's spec only its node, of another replica's RayCluster neither spec nor
most of its status), so 10,000 clusters fit in a replica's memory."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

import kubernetes
from ray.autoscaler.tags import TAG_RAY_CLUSTER_NAME

from autoscaler_bridge.cluster_pods import cluster_of
from autoscaler_bridge.kube_client import KubeCalls
from autoscaler_bridge.names import API_GROUP, API_VERSION, PLURAL, head_service_name
from autoscaler_bridge.watch_cache import SYNC_SECONDS, WatchCache
from ray_operator.observation import busiest_node_starting, is_head


SHARED_DEPTH = 32  # strings nested deeper stay as decoded (validation refuses a RayCluster nested past 64)
SHARED_LENGTH = 64  # longer strings are rarely repeated (scripts, messages)


def shared_strings(value: Any, depth: int = 0) -> Any:
    """`value` with its keys and short strings interned: every cached object's "metadata", "labels", "ray-node-type",
    "Running" … is then one string, not one per object (JSON decoding makes each anew): about half a RayCluster's
    memory and two thirds of a pod's."""
    if depth > SHARED_DEPTH:
        return value
    if isinstance(value, dict):
        return {sys.intern(key): shared_strings(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [shared_strings(item, depth + 1) for item in value]
    if isinstance(value, str) and len(value) <= SHARED_LENGTH:
        return sys.intern(value)
    return value


def without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as the operator reads it: its server-side apply bookkeeping (often half of it) dropped, its
    strings shared."""
    metadata = {key: value for key, value in obj["metadata"].items() if key != "managedFields"}
    slim: dict[str, Any] = shared_strings({**obj, "metadata": metadata})
    return slim


def _only(obj: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: obj[key] for key in keys if key in obj}


def metadata_and_status(obj: dict[str, Any]) -> dict[str, Any]:
    """A pod or Service as the operator reads it: labels, uid, phase, conditions, IP, why a container stopped, the
    node a pod was placed on; of its spec nothing else (a Ray pod's is most of it: the start script, env, volumes)."""
    kept = _only(obj, ("apiVersion", "kind", "metadata", "status"))
    node = (obj.get("spec") or {}).get("nodeName")
    return without_managed_fields({**kept, "spec": {"nodeName": node}} if node else kept)


def raycluster_as_read_by(identity: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A RayCluster as the operator `identity` reads it: whole if it runs it or nobody does yet (it may claim it);
    else only what says whose it is and whether its head starts (metadata, status.operator and status.phase): a
    replica reads another's cluster's spec only once it is its own, and the claim's answer brings it whole
    (ray_operator.status.StatusWriter.set_owner)."""

    def as_read(obj: dict[str, Any]) -> dict[str, Any]:
        status = obj.get("status") or {}
        owner = status.get("operator")
        if not isinstance(owner, dict) or owner.get("identity") in (None, "", identity):
            return without_managed_fields(obj)
        return without_managed_fields(
            {**_only(obj, ("apiVersion", "kind", "metadata")), "status": _only(status, ("operator", "phase"))}
        )

    return as_read


class ClusterObjects:
    """The RayClusters, Ray pods and Services of `namespace` (None: every namespace), as the operator `identity`
    reads them."""

    def __init__(
        self,
        calls: KubeCalls,
        namespace: str | None,
        on_change: Callable[[str, str], None],
        on_raycluster: Callable[[dict[str, Any]], None],
        identity: str,
    ) -> None:
        core = calls.core
        custom = kubernetes.client.CustomObjectsApi(calls.client)

        def changed(obj: dict[str, Any]) -> None:
            cluster = cluster_of(obj)
            if cluster is not None:
                on_change(*cluster)

        def cache(namespaced: Callable[..., Any], everywhere: Callable[..., Any], kind: str) -> WatchCache:
            lister, args = (namespaced, (namespace,)) if namespace else (everywhere, ())
            return WatchCache(
                lister,
                *args,
                label_selector=TAG_RAY_CLUSTER_NAME,
                on_change=changed,
                name=kind,
                transform=metadata_and_status,
                index=cluster_of,
            )

        self.pod_cache = cache(core.list_namespaced_pod, core.list_pod_for_all_namespaces, "Ray pods")
        self.service_cache = cache(core.list_namespaced_service, core.list_service_for_all_namespaces, "Ray Services")
        policy = kubernetes.client.PolicyV1Api(calls.client)
        self.budget_cache = cache(
            policy.list_namespaced_pod_disruption_budget,
            policy.list_pod_disruption_budget_for_all_namespaces,
            "Ray PodDisruptionBudgets",
        )
        if namespace:
            lister: Callable[..., Any] = custom.list_namespaced_custom_object
            args: tuple[str, ...] = (API_GROUP, API_VERSION, namespace, PLURAL)
        else:
            lister, args = custom.list_cluster_custom_object, (API_GROUP, API_VERSION, PLURAL)
        self.raycluster_cache = WatchCache(
            lister,
            *args,
            label_selector="",
            on_change=on_raycluster,
            name="RayClusters",
            transform=raycluster_as_read_by(identity),
        )
        self._caches = (self.pod_cache, self.service_cache, self.budget_cache, self.raycluster_cache)

    def start(self) -> ClusterObjects:
        """Pods, Services and budgets first: a RayCluster's first reconciliation finds its objects' caches listing
        already."""
        for one in self._caches:
            one.start()
        return self

    def stop(self) -> None:
        for one in self._caches:
            one.stop()

    def synced(self) -> bool:
        """Whether every cache has listed (and not failed since)."""
        return all(one.wait_synced(0) for one in self._caches)

    def pods_starting(self, now: datetime) -> int:
        """The Ray pods starting now on the busiest node (ray_operator.observation.busiest_node_starting), of every
        cluster the operator's replicas see, whichever replica runs it; raises NotSynced while the cache cannot
        know."""
        pods = ((pod, self._phase(pod) if is_head(pod) else None) for pod in self.pod_cache.items(wait=SYNC_SECONDS))
        return busiest_node_starting(pods, now)

    def _phase(self, pod: dict[str, Any]) -> str | None:
        """The phase of the pod's RayCluster."""
        key = cluster_of(pod)
        return ((self.raycluster(*key) or {}).get("status") or {}).get("phase") if key else None

    def raycluster(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The RayCluster as the watch last delivered it, None when it is gone."""
        return self.raycluster_cache.get(namespace, name)

    def pods(self, namespace: str, cluster: str, deleted: bool = False) -> list[dict[str, Any]]:
        """The cluster's pods that are not being deleted (or those that are); raises NotSynced while the cache
        cannot know."""
        return [
            p
            for p in self.pod_cache.indexed((namespace, cluster), wait=SYNC_SECONDS)
            if bool(p["metadata"].get("deletionTimestamp")) == deleted
        ]

    def head_service(self, namespace: str, cluster: str) -> dict[str, Any] | None:
        """The cluster's head Service; raises NotSynced while the cache cannot know."""
        self.service_cache.check_synced(wait=SYNC_SECONDS)
        return self.service_cache.get(namespace, head_service_name(cluster))

    def head_budget(self, namespace: str, cluster: str) -> dict[str, Any] | None:
        """The cluster's head PodDisruptionBudget; raises NotSynced while the cache cannot know."""
        self.budget_cache.check_synced(wait=SYNC_SECONDS)
        return self.budget_cache.get(namespace, head_service_name(cluster))
