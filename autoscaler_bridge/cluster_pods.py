"""Where one cluster's pods are read, created, labelled and deleted: what its node provider needs of them
(`ClusterPods`), and the one place that does it, from the operator's watch-fed pod cache and with the operator's API
client (`CachedPods`). The operator uses it for its own deletions, and serves it to its autoscalers
(autoscaler_bridge.pod_channel), which have no API client of their own.

Reads make no request. What was just created, labelled or deleted is in the cache at once, before its watch event.
While the cache cannot know (its first LIST, or a failed watch), reading raises NotSynced instead of answering "no
pods".
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException
from ray.autoscaler.tags import TAG_RAY_CLUSTER_NAME

from autoscaler_bridge import fence
from autoscaler_bridge.kube_client import KubeCalls
from autoscaler_bridge.watch_cache import SYNC_SECONDS, WatchCache

DELETE_CONCURRENCY = 8


def cluster_of(obj: dict[str, Any]) -> tuple[str, str] | None:
    """(namespace, cluster) of a Ray pod or Service: the index of the caches CachedPods reads."""
    cluster = (obj["metadata"].get("labels") or {}).get(TAG_RAY_CLUSTER_NAME)
    return (obj["metadata"].get("namespace") or "", cluster) if cluster else None


class ClusterPods(Protocol):
    """One cluster's pods, as its node provider reads and changes them."""

    def items(self, wait: float = SYNC_SECONDS) -> list[dict[str, Any]]:
        """Every pod of the cluster, those being deleted too; raises NotSynced while they cannot be known after
        `wait` seconds."""

    def create(self, pod: dict[str, Any]) -> dict[str, Any]:
        """Create the pod; returns it as created."""

    def label(self, name: str, labels: dict[str, str]) -> dict[str, Any] | None:
        """Set these labels of the pod; returns it as labelled, None if it is gone."""

    def delete(self, names: list[str], grace: dict[str, int] | None = None) -> list[str]:
        """Delete these pods, each within its own grace period or the one `grace` gives it; returns those that were
        gone already."""


class CachedPods:
    """The pods of `cluster` in `namespace`: read from `cache` (indexed by cluster_of), changed with `calls`; with a
    `fence_file` (an autoscaler's requests), changed only while the operator's Lease is valid (autoscaler_bridge.fence):
    a request that waited as the Lease lapsed is refused too."""

    def __init__(
        self, calls: KubeCalls, cache: WatchCache, namespace: str, cluster: str, fence_file: Path | None = None
    ) -> None:
        self.calls, self.cache = calls, cache
        self.namespace, self.cluster = namespace, cluster
        self.fence_file = fence_file

    def items(self, wait: float = SYNC_SECONDS) -> list[dict[str, Any]]:
        return self.cache.indexed((self.namespace, self.cluster), wait=wait)

    def _held(self, name: str) -> dict[str, Any] | None:
        """The pod of the cluster as the cache holds it, or None."""
        pod = self.cache.get(self.namespace, name)
        return pod if pod is not None and cluster_of(pod) == (self.namespace, self.cluster) else None

    def create(self, pod: dict[str, Any]) -> dict[str, Any]:
        fence.check(self.fence_file)
        response: Any = self.calls(self.calls.core.create_namespaced_pod, self.namespace, pod, _preload_content=False)
        created = json.loads(response.data)
        self.cache.put(created)
        return self._held(created["metadata"]["name"]) or created

    def label(self, name: str, labels: dict[str, str]) -> dict[str, Any] | None:
        fence.check(self.fence_file)
        try:
            response: Any = self.calls(
                self.calls.core.patch_namespaced_pod,
                name,
                self.namespace,
                {"metadata": {"labels": dict(labels)}},
                _preload_content=False,
            )
        except ApiException as error:
            if error.status != 404:
                raise
            self.cache.discard(self.namespace, name)
            return None
        self.cache.put(json.loads(response.data))
        return self._held(name)

    def delete(self, names: list[str], grace: dict[str, int] | None = None) -> list[str]:
        """A few at a time. The cache shows each at once as the deletion left it: terminating (its containers drain
        and stop) or gone; the watch says the rest."""
        fence.check(self.fence_file)

        def delete(name: str) -> bool:
            seconds = (grace or {}).get(name)
            options = {} if seconds is None else {"grace_period_seconds": seconds}
            try:
                response: Any = self.calls(
                    self.calls.core.delete_namespaced_pod, name, self.namespace, _preload_content=False, **options
                )
            except ApiException as error:
                if error.status != 404:
                    raise
                self.cache.discard(self.namespace, name)
                return False
            left = json.loads(response.data)
            if (left.get("metadata") or {}).get("deletionGracePeriodSeconds"):
                self.cache.refresh(left)
            else:
                self.cache.discard(self.namespace, name)
            return True

        if not names:
            return []
        with ThreadPoolExecutor(max_workers=min(DELETE_CONCURRENCY, len(names))) as pool:
            return [name for name, existed in zip(names, pool.map(delete, names), strict=True) if not existed]
