"""Where the Ray autoscaler's decisions become pod changes: its NodeProvider for Kubernetes.

Loaded by the autoscaler through `provider: {type: external, module:
autoscaler_bridge.node_provider.KubernetesNodeProvider}` for one RayCluster in
one namespace. A node is a pod; its id is the pod's name; the autoscaler's
tags are the pod's labels, set when the pod is created, so no pod ever exists
without them.

Cost: nothing is polled, and the autoscaler makes no API request itself. It
asks its operator (autoscaler_bridge.pod_channel), which reads the cluster's
pods from its watch-fed cache and creates, labels and deletes them
(autoscaler_bridge.cluster_pods); what was launched or deleted is seen at once.
While the pods cannot be known (the cache's first LIST or a failed watch),
listing raises instead of reading as "no pods". The head pod and Service are
the operator's (ray_operator.head); the autoscaler never deletes the head. No
pod is created or deleted once the operator's Lease is past its deadline
(autoscaler_bridge.fence), and no more are created at once than the operator's
bound on Ray pods starting on a node leaves (autoscaler_bridge.start_gate).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from ray.autoscaler.node_launch_exception import NodeLaunchException
from ray.autoscaler.node_provider import NodeProvider
from ray.autoscaler.tags import (
    NODE_KIND_HEAD,
    STATUS_SETTING_UP,
    STATUS_UNINITIALIZED,
    STATUS_UP_TO_DATE,
    STATUS_UPDATE_FAILED,
    TAG_RAY_NODE_KIND,
    TAG_RAY_NODE_STATUS,
    TAG_RAY_USER_NODE_TYPE,
)

from autoscaler_bridge import fence, start_gate
from autoscaler_bridge.names import JOINED_TAG
from autoscaler_bridge.pod_channel import PodChannel
from autoscaler_bridge.ray_pod import build_ray_pod
from autoscaler_bridge.watch_cache import NotSynced

log = logging.getLogger(__name__)

_TAG_PREFIX = "ray-"


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
    """`ray-node-status` as the autoscaler must see it: no updater runs, so the pod's phase says it, and of a running
    worker whether its Ray node has joined (JOINED_TAG): until then it is setting up. Ray's autoscaler stops a worker
    up to date that has not reported to the GCS for 30 s ("lost contact with raylet"), which on a loaded node is one
    still starting Ray (`ray start` alone may take that long), whose start then begins again elsewhere."""
    phase = (pod.get("status") or {}).get("phase")
    labels = pod["metadata"].get("labels") or {}
    if phase == "Running":
        joined = JOINED_TAG in labels or labels.get(TAG_RAY_NODE_KIND) == NODE_KIND_HEAD
        return STATUS_UP_TO_DATE if joined else STATUS_SETTING_UP
    if phase in ("Failed", "Succeeded"):
        return STATUS_UPDATE_FAILED
    return labels.get(TAG_RAY_NODE_STATUS, STATUS_UNINITIALIZED)


class KubernetesNodeProvider(NodeProvider):
    """Ray nodes as pods of one RayCluster."""

    def __init__(self, provider_config: dict[str, Any], cluster_name: str) -> None:
        """The cluster's pods are asked of the operator serving them at the provider config's `pod_service`."""
        super().__init__(provider_config, cluster_name)
        self.namespace = provider_config["namespace"]
        self._pods = PodChannel(
            provider_config["pod_service"], self.namespace, cluster_name, provider_config.get("fence_file")
        )
        self._listed: dict[str, dict[str, Any]] | None = None  # the last listing, by name; None once a write left it

    def _listing(self) -> list[dict[str, Any]]:
        """Every pod of the cluster, asked of the operator. A round lists first (non_terminated_nodes), then asks about
        each node many times (its tags, IP, state: ~50 questions a round for 3 pods): those are answered from the
        last listing, until a write of this provider's makes it stale."""
        pods = self._pods.items()
        self._listed = {p["metadata"]["name"]: p for p in pods}
        return pods

    # Listing: from the operator's cache, no request.
    def pods(self, label_filters: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """The cluster's pods that are not being deleted, matching `label_filters`; raises NotSynced while the
        cache cannot know them."""
        wanted = (label_filters or {}).items()
        return [
            p
            for p in self._listing()
            if not p["metadata"].get("deletionTimestamp") and wanted <= (p["metadata"].get("labels") or {}).items()
        ]

    def terminating_workers(self) -> list[str]:
        """The cluster's worker pods being deleted (draining, or stopping Ray): they go, but are still there."""
        return [
            p["metadata"]["name"]
            for p in self._listing()
            if p["metadata"].get("deletionTimestamp")
            and (p["metadata"].get("labels") or {}).get(TAG_RAY_NODE_KIND) != NODE_KIND_HEAD
        ]

    def non_terminated_nodes(self, tag_filters: dict[str, str]) -> list[str]:
        status_filter = tag_filters.get(TAG_RAY_NODE_STATUS)
        pods = self.pods({k: v for k, v in tag_filters.items() if k != TAG_RAY_NODE_STATUS})
        if status_filter is not None:
            pods = [p for p in pods if node_status(p) == status_filter]
        return [p["metadata"]["name"] for p in pods]

    def _pod(self, node_id: str) -> dict[str, Any] | None:
        listed = self._listed
        if listed is None:
            self._listing()
            listed = self._listed or {}
        return listed.get(node_id)

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
        self._listed = None
        if self._pods.label(node_id, tags) is None:
            log.info("%s,%s: pod %s is gone; its tags were not set", self.cluster_name, self.namespace, node_id)

    # Creating pods.
    def create_node_with_resources_and_labels(
        self,
        node_config: dict[str, Any],
        tags: dict[str, str],
        count: int,
        resources: dict[str, Any],
        labels: dict[str, str],
    ) -> dict[str, Any]:
        """Create `count` pods of the tagged podType; raises NodeLaunchException if any could not be made, Fenced if
        the operator's Lease is past its deadline. None while the cluster has no head pod: the operator restarts the
        cluster, and Ray's autoscaler, counting the head among its podType's nodes, would launch one as a worker."""
        fence.check(self.provider_config.get("fence_file"))
        pod_type = tags.get(TAG_RAY_USER_NODE_TYPE)
        try:
            same_type = self.pods({TAG_RAY_USER_NODE_TYPE: pod_type} if pod_type else {})
            headless = not self.pods({TAG_RAY_NODE_KIND: NODE_KIND_HEAD})
        except NotSynced as error:
            raise NodeLaunchException("Pods unknown", str(error), src_exc_info=None) from error
        if headless:
            log.info(
                "%s,%s: not launching %d %s pods: the cluster has no head pod",
                self.cluster_name,
                self.namespace,
                count,
                pod_type,
            )
            return {}
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
        places = self._places_to_start(count, pod_type)
        count = places.allowed
        pod = build_ray_pod(
            self.provider_config, self.cluster_name, node_config, tags, {k: int(v) for k, v in resources.items()}
        )
        created: dict[str, Any] = {}
        for _ in range(count):
            try:
                self._listed = None
                body = self._pods.create(pod)
            except Exception as error:
                start_gate.withdraw(self.provider_config.get("start_gate_file"), places, count - len(created))
                log.error(
                    "%s,%s: creating a %s pod failed after %d of %d: %s",
                    self.cluster_name,
                    self.namespace,
                    pod_type,
                    len(created),
                    count,
                    error,
                )
                raise NodeLaunchException("Failed to create pod", str(error), src_exc_info=None) from error
            created[body["metadata"]["name"]] = body
        return created

    def _places_to_start(self, count: int, pod_type: str | None) -> start_gate.Claim:
        """The places claimed for as many of `count` pods as may start now: no more than the operator's bound on Ray
        pods starting at once on one node leaves (autoscaler_bridge.start_gate); the others are launched in a later
        round."""
        places = start_gate.claim(self.provider_config.get("start_gate_file"), count)
        if places.allowed < count:
            log.info(
                "%s,%s: launching %d of %d %s pods now: %d Ray pods are starting on the busiest node, as many as the "
                "operator lets start at once",
                self.cluster_name,
                self.namespace,
                places.allowed,
                count,
                pod_type,
                places.taken,
            )
        return places

    def create_node(self, node_config: dict[str, Any], tags: dict[str, str], count: int) -> dict[str, Any]:
        return self.create_node_with_resources_and_labels(node_config, tags, count, {}, {})

    # Deleting pods.
    def _refused_head(self, node_id: str) -> bool:
        pod = self._pod(node_id)
        if pod is None or (pod["metadata"].get("labels") or {}).get(TAG_RAY_NODE_KIND) != NODE_KIND_HEAD:
            return False
        log.warning(
            "%s,%s: refusing to terminate the head pod %s (the operator manages it)",
            self.cluster_name,
            self.namespace,
            node_id,
        )
        return True

    def terminate_node(self, node_id: str) -> None:
        self.terminate_nodes([node_id])

    def terminate_nodes(self, node_ids: list[str]) -> None:
        fence.check(self.provider_config.get("fence_file"))
        workers = [node_id for node_id in node_ids if not self._refused_head(node_id)]
        self._listed = None
        for gone in self._pods.delete(workers):
            log.info("%s,%s: pod %s was already deleted", self.cluster_name, self.namespace, gone)
