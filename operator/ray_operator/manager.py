"""The operator's clusters: one controller per RayCluster, created, fed and stopped as RayClusters come and go;
reconciled by a bounded pool of workers when the RayCluster, one of its pods or its head Service changes (the watches
of ray_operator.cluster_objects, the operator's one way in), when the operator's replicas change
(ray_operator.membership), when its autoscaler process ends, when its last reconciliation said to look again
(ray_operator.decide.recheck_seconds), and every `resync_seconds`. While it runs autoscalers it tells them, every
second, how many Ray pods are starting on the busiest node (autoscaler_bridge.start_gate), and answers their requests
for their clusters' pods (autoscaler_bridge.pod_channel)."""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from autoscaler_bridge import start_gate
from autoscaler_bridge.cluster_pods import CachedPods
from autoscaler_bridge.kube_client import KubeCalls
from autoscaler_bridge.pod_channel import PodService
from autoscaler_bridge.watch_cache import NotSynced
from ray_operator.cluster_controller import ClusterController
from ray_operator.cluster_objects import ClusterObjects
from ray_operator.membership import Membership
from ray_operator.metrics import AUTOSCALER_RESTARTS
from ray_operator.monitor_process import prestart
from ray_operator.settings import Settings
from ray_operator.work_queue import WorkerPool, WorkQueue, pool_health

log = logging.getLogger(__name__)
# A reconciliation makes a few requests and reads a few files: every worker busy this long means none is working.
STUCK_SECONDS = 300.0


class ClusterManager:
    def __init__(self, settings: Settings, calls: KubeCalls | None = None) -> None:
        self.settings = settings
        self.calls = calls or KubeCalls()
        self._controllers: dict[tuple[str, str], ClusterController] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.queue = WorkQueue()
        settings.work_dir.mkdir(parents=True, exist_ok=True)
        # Read by Ray's autoscaler when its modules are imported, i.e. in the monitors' forkserver.
        os.environ["AUTOSCALER_UPDATE_INTERVAL_S"] = str(settings.autoscaler_interval_seconds)
        self.membership = Membership(
            self.calls,
            settings.lease_namespace,
            settings.identity,
            group=settings.group,
            fence_path=settings.fence_path,
            on_members=self._wake_all,
            on_lapse=self._fence_all,
        ).start()
        self.pool = WorkerPool(self.queue, self._reconcile, settings.reconcile_workers).start()
        self.objects = ClusterObjects(
            self.calls, settings.namespace, self.wake, self._raycluster_changed, settings.identity
        )
        self.objects.start()
        self.pod_service = PodService(settings.pod_service_path, self._cluster_pods).start()
        self._exits = threading.Thread(target=self._wake_on_autoscaler_exit, daemon=True, name="autoscaler exits")
        self._exits.start()
        threading.Thread(target=self._publish_pods_starting, daemon=True, name="pods starting").start()
        threading.Thread(target=prestart, daemon=True, name="forkserver").start()

    def _cluster_pods(self, namespace: str, cluster: str) -> CachedPods:
        """A cluster's pods, as its autoscaler reads and changes them (autoscaler_bridge.pod_channel): changed only
        while this operator's Lease is valid."""
        return CachedPods(self.calls, self.objects.pod_cache, namespace, cluster, self.settings.fence_path)

    def _raycluster_changed(self, body: dict[str, Any]) -> None:
        """The RayCluster watch saw a change (or a relist): observe the RayCluster as the cache holds it now, or
        forget it when it is gone or being deleted (another controller's finalizer may hold it: nothing more is
        made for it)."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        current = self.objects.raycluster(namespace, name)
        if current is None or current["metadata"].get("deletionTimestamp"):
            self.forget(namespace, name, current)
        else:
            self.observe(current)

    def observe(self, body: dict[str, Any]) -> None:
        """A RayCluster was seen (listed, created or changed): reconcile it, unless only its status changed (the
        operator's own status writes come back this way)."""
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        with self._lock:
            controller = self._controllers.get(key)
            if controller is None:
                self._controllers[key] = ClusterController(
                    body, self.settings, self.calls, self.objects, self.membership
                )
                changed = True
            else:
                changed = controller.update(body)
        if changed:
            self.queue.add(key)

    def wake(self, namespace: str, name: str) -> None:
        """One of the cluster's pods or its head Service changed: reconcile it soon."""
        self.queue.add((namespace, name))

    def _wake_all(self) -> None:
        """The operator's replicas changed (or its own Lease's validity): every cluster may have another owner."""
        with self._lock:
            keys = list(self._controllers)
        for key in keys:
            self.queue.add(key)

    def _fence_all(self) -> None:
        """This operator's Lease lapsed: every autoscaler stops before it counts as valid again."""
        with self._lock:
            controllers = list(self._controllers.values())
        for controller in controllers:
            controller.fence()

    def _reconcile(self, key: Any) -> None:
        with self._lock:
            controller = self._controllers.get(key)
        if controller is None or controller.stopped:
            return
        recheck = controller.reconcile_once()
        if controller.found_deleted:
            namespace, name = key
            self.forget(namespace, name, only=controller)
            return
        if recheck is None:
            self.queue.add_after_failure(key)
            return
        self.queue.forget_failures(key)
        if not controller.stopped:
            self.queue.add_after(key, min(recheck, self.settings.resync_seconds))

    def _wake_on_autoscaler_exit(self) -> None:
        """An autoscaler's exit wakes its cluster at once: every second, each running one is asked (a local check of
        the process, no request)."""
        while not self._stopped.wait(1.0):
            with self._lock:
                controllers = list(self._controllers.items())
            for key, controller in controllers:
                if controller.autoscaler_exited():
                    self.queue.add(key)

    def _publish_pods_starting(self) -> None:
        """Every second while an autoscaler runs here: the Ray pods starting on the busiest node, for its node
        provider to claim places against (autoscaler_bridge.start_gate)."""
        bound = self.settings.max_starting_pods
        while bound and not self._stopped.wait(1.0):
            with self._lock:
                autoscaling = any(controller.monitor is not None for controller in self._controllers.values())
            if not autoscaling:
                continue
            counted_at = time.monotonic()
            try:
                starting = self.objects.pods_starting(datetime.now(timezone.utc))
                start_gate.publish(self.settings.start_gate_path, bound, starting, counted_at)
            except NotSynced:
                continue  # the last count stands, and the claims since count for CLAIM_SECONDS
            except Exception:  # noqa: BLE001 - the next second tries again
                log.exception("publishing the Ray pods starting failed")

    def forget(
        self, namespace: str, name: str, deleting: dict[str, Any] | None = None, only: ClusterController | None = None
    ) -> None:
        """A RayCluster was deleted (`deleting`: as the watch shows it being deleted, its finalizers saying how):
        stop its autoscaler, remove its files and delete its pods (ClusterController.stop). `only`: if it is still
        this controller's (the one that found the RayCluster deleted)."""
        with self._lock:
            controller = self._controllers.get((namespace, name))
            if controller is None or (only is not None and controller is not only):
                return
            del self._controllers[(namespace, name)]
        if deleting is not None:
            controller.update(deleting)
        controller.stop(forget=True)
        AUTOSCALER_RESTARTS.remove(namespace, name)
        controller.log.info("stopped: the RayCluster was deleted")

    def ready(self) -> bool:
        """Whether the operator serves: its watches have listed, and its Lease is valid."""
        return self.objects.synced() and self.membership.valid()

    def health(self) -> dict[str, object]:
        """The reconcile workers' health for /healthz; PoolStuck when every worker has been on one cluster for longer
        than STUCK_SECONDS."""
        return pool_health(self.pool.busy(), self.pool.workers, STUCK_SECONDS)

    def statuses(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(namespace, name, status as last written) of every RayCluster this operator runs (not those another
        operator runs: each cluster is counted once, by its owner)."""
        with self._lock:
            return [
                (ns, name, dict(controller.status.current))
                for (ns, name), controller in self._controllers.items()
                if controller.owned
            ]

    def shutdown(self) -> None:
        """Stop every autoscaler, leaving every pod as it is (the operator is stopping)."""
        with self._lock:
            controllers = list(self._controllers.values())
            self._controllers.clear()
        self._stopped.set()
        self.pool.stop()
        if controllers:
            with ThreadPoolExecutor(max_workers=min(16, len(controllers))) as pool:
                list(pool.map(lambda c: c.stop(), controllers))
        self.membership.stop()  # its clusters are the other replicas' to take at once
        log.info("stopped %d cluster autoscalers; pods left running", len(controllers))
        self.pod_service.stop()
        self.objects.stop()
