"""Ray pods served to node providers as an operator serves them to its autoscalers (autoscaler_bridge.pod_channel),
for tests that run a node provider or Ray's autoscaler without an operator."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import kubernetes
from ray.autoscaler.tags import TAG_RAY_CLUSTER_NAME

from autoscaler_bridge.cluster_pods import CachedPods, cluster_of
from autoscaler_bridge.kube_client import KubeCalls
from autoscaler_bridge.pod_channel import PodService
from autoscaler_bridge.watch_cache import WatchCache
from ray_operator.cluster_objects import metadata_and_status


@contextmanager
def served_pods(client: kubernetes.client.ApiClient, socket: Path) -> Iterator[WatchCache]:
    """Every Ray pod of the API server behind `client`, in a watch-fed cache as the operator keeps them, served at
    `socket`; yields the cache, listed."""
    calls = KubeCalls(client)
    cache = WatchCache(
        calls.core.list_pod_for_all_namespaces,
        label_selector=TAG_RAY_CLUSTER_NAME,
        name="Ray pods",
        transform=metadata_and_status,
        index=cluster_of,
    ).start()
    service = PodService(socket, lambda namespace, cluster: CachedPods(calls, cache, namespace, cluster)).start()
    try:
        assert cache.wait_synced(30), "the Ray pods' cache never listed"
        yield cache
    finally:
        service.stop()
        cache.stop()
