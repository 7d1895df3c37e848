"""Where Ray pods are created and deleted: the Ray autoscaler's NodeProvider for Kubernetes.

Loaded by the autoscaler through `provider: {type: external, module:
autoscaler_bridge.node_provider.KubernetesNodeProvider}` for one RayCluster in
one namespace. A node is a pod; its id is the pod's name; the autoscaler's
tags are the pod's labels, set when the pod is created, so no pod ever exists
without them.

Cost: each `non_terminated_nodes` call is one LIST of the cluster's pods (by
label), and every per-node question of the same round (tags, IP, state) is
answered from that LIST, so the requests per autoscaler round do not grow
with the number of pods.

The operator uses the same class to create the head Service and head pod.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from kubernetes.client.exceptions import ApiException
from ray.autoscaler._private.util import hash_launch_conf
from ray.autoscaler.node_launch_exception import NodeLaunchException
from ray.autoscaler.node_provider import NodeProvider
from ray.autoscaler.tags import (
    NODE_KIND_HEAD,
    STATUS_UNINITIALIZED,
    STATUS_UP_TO_DATE,
    STATUS_UPDATE_FAILED,
    TAG_RAY_CLUSTER_NAME,
    TAG_RAY_LAUNCH_CONFIG,
    TAG_RAY_NODE_KIND,
    TAG_RAY_NODE_NAME,
    TAG_RAY_NODE_STATUS,
    TAG_RAY_USER_NODE_TYPE,
)

from autoscaler_bridge.kube_client import KubeCalls
from autoscaler_bridge.ray_pod import build_head_service, build_ray_pod, head_selector

log = logging.getLogger(__name__)

TERMINATE_CONCURRENCY = 8
_TAG_PREFIX = "ray-"


def head_tags(config: dict[str, Any]) -> dict[str, str]:
    """The autoscaler's tags for the head pod of a cluster config."""
    head_type = config["head_node_type"]
    node_config = config["available_node_types"][head_type]["node_config"]
    return {
        TAG_RAY_NODE_KIND: NODE_KIND_HEAD,
        TAG_RAY_USER_NODE_TYPE: head_type,
        TAG_RAY_NODE_NAME: f"ray-{config['cluster_name']}-head",
        TAG_RAY_NODE_STATUS: STATUS_UNINITIALIZED,
        TAG_RAY_LAUNCH_CONFIG: hash_launch_conf(node_config, config.get("auth", {})),
    }


def _pending(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        p
        for p in pods
        if (p.get("status") or {}).get("phase", "Pending") == "Pending" and not p["metadata"].get("deletionTimestamp")
    ]


def pending_pods_block(
    pods: list[dict[str, Any]], max_pending: int | None, timeout: float | None, now: datetime
) -> str | None:
    """Why no more pods of a podType may be launched while these of its pods are Pending, or None.

    A scale-up must not run away into Pending pods (no node can take them):
    past `max_pending` Pending pods, or once one has been Pending longer than
    `timeout` seconds, launches of the type stop until they start.
    """
    pending = _pending(pods)
    if max_pending is not None and len(pending) >= max_pending:
        return f"{len(pending)} pods are Pending (the bound is {max_pending}): no more are launched until they start"
    if timeout is not None:
        stuck = [p for p in pending if (now - _created(p)).total_seconds() > timeout]
        if stuck:
            return (
                f"{len(stuck)} pods have been Pending for more than {timeout:g}s: no more are launched until they start"
            )
    return None


def _created(pod: dict[str, Any]) -> datetime:
    stamp = pod["metadata"].get("creationTimestamp")
    if not stamp:
        return datetime.now(timezone.utc)
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def node_status(pod: dict[str, Any]) -> str:
    """`ray-node-status` as the autoscaler must see it: no updater runs, so the pod's phase says it."""
    phase = (pod.get("status") or {}).get("phase")
    if phase == "Running":
        return STATUS_UP_TO_DATE
    if phase in ("Failed", "Succeeded"):
        return STATUS_UPDATE_FAILED
    return (pod["metadata"].get("labels") or {}).get(TAG_RAY_NODE_STATUS, STATUS_UNINITIALIZED)


class KubernetesNodeProvider(NodeProvider):
    """Ray nodes as pods of one RayCluster."""

    def __init__(self, provider_config: dict[str, Any], cluster_name: str, calls: KubeCalls | None = None) -> None:
        super().__init__(provider_config, cluster_name)
        self.namespace = provider_config["namespace"]
        self.calls = calls or KubeCalls()
        self._lock = threading.RLock()
        self._pods: dict[str, dict[str, Any]] = {}

    # Listing: one LIST per call, the cache answers the rest of the round.
    def _list_pods(self, tag_filters: dict[str, str]) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in {**tag_filters, TAG_RAY_CLUSTER_NAME: self.cluster_name}.items())
        listed: Any = self.calls(
            self.calls.core.list_namespaced_pod, self.namespace, label_selector=selector, _preload_content=False
        )  # the raw response: JSON, not models
        return json.loads(listed.data)["items"]

    def pods(self, label_filters: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """The cluster's pods that are not being deleted (one LIST); they also refresh the cache."""
        label_filters = label_filters or {}
        pods = [p for p in self._list_pods(label_filters) if not p["metadata"].get("deletionTimestamp")]
        with self._lock:
            for pod in pods:
                self._pods[pod["metadata"]["name"]] = pod
            if not label_filters:
                listed = {p["metadata"]["name"] for p in pods}
                for name in [n for n in self._pods if n not in listed]:
                    del self._pods[name]
        return pods

    def non_terminated_nodes(self, tag_filters: dict[str, str]) -> list[str]:
        status_filter = tag_filters.get(TAG_RAY_NODE_STATUS)
        pods = self.pods({k: v for k, v in tag_filters.items() if k != TAG_RAY_NODE_STATUS})
        if status_filter is not None:
            pods = [p for p in pods if node_status(p) == status_filter]
        return [p["metadata"]["name"] for p in pods]

    def _pod(self, node_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._pods.get(node_id)

    def is_running(self, node_id: str) -> bool:
        pod = self._pod(node_id)
        return pod is not None and (pod.get("status") or {}).get("phase") == "Running"

    def is_terminated(self, node_id: str) -> bool:
        pod = self._pod(node_id)
        return pod is None or bool(pod["metadata"].get("deletionTimestamp"))

    def node_tags(self, node_id: str) -> dict[str, str]:
        pod = self._pod(node_id)
        if pod is None:
            return {}
        labels = pod["metadata"].get("labels") or {}
        tags = {k: v for k, v in labels.items() if k.startswith(_TAG_PREFIX)}
        tags[TAG_RAY_NODE_STATUS] = node_status(pod)
        return tags

    def internal_ip(self, node_id: str) -> str | None:  # type: ignore[override]  # None until the pod has an IP
        pod = self._pod(node_id)
        return (pod.get("status") or {}).get("podIP") if pod else None

    def external_ip(self, node_id: str) -> str | None:  # type: ignore[override]
        return self.internal_ip(node_id)

    def set_node_tags(self, node_id: str, tags: dict[str, str]) -> None:
        try:
            patched: Any = self.calls(
                self.calls.core.patch_namespaced_pod, node_id, self.namespace, {"metadata": {"labels": dict(tags)}}
            )
        except ApiException as error:
            if error.status == 404:
                log.info("%s,%s: pod %s is gone; its tags were not set", self.cluster_name, self.namespace, node_id)
                return
            raise
        with self._lock:
            if node_id in self._pods:
                self._pods[node_id]["metadata"]["labels"] = dict(patched.metadata.labels or {})

    # Creating pods.
    def _create_pod(self, pod: dict[str, Any]) -> dict[str, Any]:
        created: Any = self.calls(self.calls.core.create_namespaced_pod, self.namespace, pod, _preload_content=False)
        body = json.loads(created.data)
        with self._lock:
            self._pods[body["metadata"]["name"]] = body
        return body

    def create_node_with_resources_and_labels(
        self,
        node_config: dict[str, Any],
        tags: dict[str, str],
        count: int,
        resources: dict[str, Any],
        labels: dict[str, str],
    ) -> dict[str, Any]:
        """Create `count` pods of the tagged podType; raises NodeLaunchException if any could not be made."""
        pod_type = tags.get(TAG_RAY_USER_NODE_TYPE)
        with self._lock:
            same_type = [
                p
                for p in self._pods.values()
                if (p["metadata"].get("labels") or {}).get(TAG_RAY_USER_NODE_TYPE) == pod_type
            ]
        blocked = pending_pods_block(
            same_type,
            self.provider_config.get("max_pending_pods"),
            self.provider_config.get("pending_timeout_seconds"),
            datetime.now(timezone.utc),
        )
        if blocked:
            log.warning(
                "%s,%s: not launching %d %s pods: %s", self.cluster_name, self.namespace, count, pod_type, blocked
            )
            raise NodeLaunchException("Pending pods", blocked, src_exc_info=None)
        max_pending = self.provider_config.get("max_pending_pods")
        if max_pending is not None and count > max_pending - len(_pending(same_type)):
            allowed = max_pending - len(_pending(same_type))
            log.warning(
                "%s,%s: launching %d of %d %s pods: at most %d may be Pending",
                self.cluster_name,
                self.namespace,
                allowed,
                count,
                pod_type,
                max_pending,
            )
            count = allowed
        pod = build_ray_pod(
            self.provider_config, self.cluster_name, node_config, tags, {k: int(v) for k, v in resources.items()}
        )
        created: dict[str, Any] = {}
        for _ in range(count):
            try:
                body = self._create_pod(pod)
            except Exception as error:
                log.error(
                    "%s,%s: creating a %s pod failed after %d of %d: %s",
                    self.cluster_name,
                    self.namespace,
                    tags.get(TAG_RAY_USER_NODE_TYPE),
                    len(created),
                    count,
                    error,
                )
                raise NodeLaunchException("Failed to create pod", str(error), src_exc_info=None) from error
            created[body["metadata"]["name"]] = body
        return created

    def create_node(self, node_config: dict[str, Any], tags: dict[str, str], count: int) -> dict[str, Any]:
        return self.create_node_with_resources_and_labels(node_config, tags, count, {}, {})

    # Deleting pods.
    def terminate_node(self, node_id: str) -> None:
        pod = self._pod(node_id)
        if pod is not None and (pod["metadata"].get("labels") or {}).get(TAG_RAY_NODE_KIND) == NODE_KIND_HEAD:
            log.warning(
                "%s,%s: refusing to terminate the head pod %s (the operator manages it)",
                self.cluster_name,
                self.namespace,
                node_id,
            )
            return
        self.delete_pod(node_id)

    def delete_pod(self, node_id: str) -> None:
        """Delete a pod of the cluster, head included; one already gone is no error."""
        try:
            self.calls(self.calls.core.delete_namespaced_pod, node_id, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            log.info("%s,%s: pod %s was already deleted", self.cluster_name, self.namespace, node_id)
        with self._lock:
            self._pods.pop(node_id, None)

    def terminate_nodes(self, node_ids: list[str]) -> None:
        if not node_ids:
            return
        with ThreadPoolExecutor(max_workers=min(TERMINATE_CONCURRENCY, len(node_ids))) as pool:
            list(pool.map(self.terminate_node, node_ids))

    # The head, for the operator.
    def ensure_head_service(self, config: dict[str, Any]) -> dict[str, Any]:
        """The head Service, created if missing (creating it twice is a no-op)."""
        head_config = config["available_node_types"][config["head_node_type"]]["node_config"]
        service = build_head_service(self.provider_config, self.cluster_name, head_config)
        try:
            return self.calls(self.calls.core.create_namespaced_service, self.namespace, service).to_dict()
        except ApiException as error:
            if error.status != 409:
                raise
        return self.calls(
            self.calls.core.read_namespaced_service, service["metadata"]["name"], self.namespace
        ).to_dict()

    def ensure_head_pod(self, config: dict[str, Any]) -> dict[str, Any]:
        """The head pod, created if the cluster has none (found by its labels, so creating twice is a no-op)."""
        existing = self.pods(head_selector(self.cluster_name))
        if existing:
            return existing[0]
        head_type = config["head_node_type"]
        node_type = config["available_node_types"][head_type]
        pod = build_ray_pod(
            self.provider_config, self.cluster_name, node_type["node_config"], head_tags(config), node_type["resources"]
        )
        return self._create_pod(pod)
