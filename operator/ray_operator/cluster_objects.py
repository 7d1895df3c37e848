"""Where the operator sees every cluster's pods and head Service: two watch-fed caches, one watch per kind for every
cluster it manages (label-selected to Ray's objects), which wake a cluster's controller when one of its objects
changes. Nothing is listed or created to learn whether it exists; what the operator itself just made or deleted is
in the caches at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.autoscaler.tags import TAG_RAY_CLUSTER_NAME

from autoscaler_bridge.kube_client import KubeCalls
from autoscaler_bridge.names import head_service_name
from autoscaler_bridge.watch_cache import SYNC_SECONDS, WatchCache


class ClusterObjects:
    """The Ray pods and Services of `namespace` (None: every namespace); `on_change(namespace, cluster)` is called
    for each change of one of a cluster's objects."""

    def __init__(self, calls: KubeCalls, namespace: str | None, on_change: Callable[[str, str], None]) -> None:
        core = calls.core

        def changed(obj: dict[str, Any]) -> None:
            cluster = (obj["metadata"].get("labels") or {}).get(TAG_RAY_CLUSTER_NAME)
            if cluster:
                on_change(obj["metadata"]["namespace"], cluster)

        def cache(namespaced: Callable[..., Any], everywhere: Callable[..., Any], kind: str) -> WatchCache:
            lister, args = (namespaced, (namespace,)) if namespace else (everywhere, ())
            return WatchCache(lister, *args, label_selector=TAG_RAY_CLUSTER_NAME, on_change=changed, name=kind)

        self.pod_cache = cache(core.list_namespaced_pod, core.list_pod_for_all_namespaces, "Ray pods")
        self.service_cache = cache(core.list_namespaced_service, core.list_service_for_all_namespaces, "Ray Services")

    def start(self) -> ClusterObjects:
        self.pod_cache.start()
        self.service_cache.start()
        return self

    def stop(self) -> None:
        self.pod_cache.stop()
        self.service_cache.stop()

    def pods(self, namespace: str, cluster: str) -> list[dict[str, Any]]:
        """The cluster's pods that are not being deleted; raises NotSynced while the cache cannot know."""
        return [
            p
            for p in self.pod_cache.items(wait=SYNC_SECONDS)
            if p["metadata"]["namespace"] == namespace
            and (p["metadata"].get("labels") or {}).get(TAG_RAY_CLUSTER_NAME) == cluster
            and not p["metadata"].get("deletionTimestamp")
        ]

    def head_service(self, namespace: str, cluster: str) -> dict[str, Any] | None:
        """The cluster's head Service; raises NotSynced while the cache cannot know."""
        self.service_cache.items(wait=SYNC_SECONDS)  # raises NotSynced
        return self.service_cache.get(namespace, head_service_name(cluster))
