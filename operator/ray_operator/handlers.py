"""The operator's watch loop: kopf's, feeding RayCluster events to the cluster manager.

Only raw event handlers are registered, so kopf writes nothing to RayClusters
(no progress annotations) and adds no finalizer: deleting a RayCluster or its
namespace never waits for the operator, and Kubernetes removes the pods
through their ownerReferences even when the operator is down.
"""

from __future__ import annotations

import os
from typing import Any

import kopf

from autoscaler_bridge.names import API_GROUP, API_VERSION, PLURAL
from ray_operator.manager import ClusterManager


def registry_for(manager: ClusterManager) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> Any:
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
            return kopf.login_with_service_account(**kwargs)
        return kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.event(API_GROUP, API_VERSION, PLURAL, registry=registry)
    def raycluster_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        metadata = body["metadata"]
        # Being deleted (another controller's finalizer may hold it): stop as for a deleted one, create nothing more.
        if event.get("type") == "DELETED" or metadata.get("deletionTimestamp"):
            manager.forget(metadata["namespace"], metadata["name"])
        else:
            manager.observe(dict(body))

    @kopf.on.probe(id="reconciliation", registry=registry)
    def reconciliation(**_: Any) -> dict[str, object]:
        """/healthz: the reconcile workers (a stuck pool fails the probe: the process answers, its work does not)."""
        return manager.health()

    @kopf.on.cleanup(registry=registry)
    def cleanup(**_: Any) -> None:
        manager.shutdown()

    return registry


def kopf_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False  # Events are posted by ray_operator.status, one per real change
    settings.watching.reconnect_backoff = 1.0
    settings.watching.server_timeout = 300
    # Bounded on the client side too: a watch made while the API server starts up can go unanswered for good.
    settings.watching.connect_timeout = 5
    settings.watching.client_timeout = settings.watching.server_timeout + 30
    # No watch on CRDs: the RayCluster CRD is installed before the operator, and a namespaced operator
    # may not list CRDs.
    settings.scanning.disabled = True
    return settings
