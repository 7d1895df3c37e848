"""Ray's own StandardAutoscaler, driving our provider against the API server on loopback.

Here no Ray process runs: the test plays the kubelet (marks pods Running with
an IP) and the GCS (reports each node's load to the autoscaler's LoadMetrics).
The end-to-end suite runs the same with real Ray processes.
"""

import copy

from ray.autoscaler._private.autoscaler import StandardAutoscaler
from ray.autoscaler._private.load_metrics import LoadMetrics

from tests.unit.test_node_provider import cluster, pods, set_phase  # noqa: F401 - fixtures
from tests.harness.waiting import wait_for

from autoscaler_bridge.kube_client import KubeCalls
from ray_operator.head import create_head_pod


class DrainingGcs:
    """The GCS's DrainNode call, which the autoscaler makes before terminating nodes."""

    def __init__(self):
        self.drained = []

    def drain_nodes(self, node_ids, timeout):
        self.drained += node_ids
        return node_ids


class FakeRayCluster:
    """Kubelet and GCS at once: running pods get IPs, and report load to the autoscaler."""

    def __init__(self, kube, load_metrics):
        self.kube, self.load = kube, load_metrics
        self.ips = {}
        self.demand = []
        self.busy = True

    def tick(self):
        existing = [p.metadata.name for p in pods(self.kube)]
        for name in existing:
            if name not in self.ips:
                self.ips[name] = f"127.0.0.{len(self.ips) + 1}"
                set_phase(self.kube, name, "Running", self.ips[name])
        self.load.prune_active_ips([self.ips[n] for n in existing])
        for name in existing:
            ip = self.ips[name]
            head = name.startswith("demo-rayheadtype")
            static = {"CPU": 1.0}
            dynamic = {"CPU": 0.0 if (self.busy or head) else 1.0}
            self.load.update(
                ip,
                name.encode().ljust(28, b"0")[:28],
                static,
                dynamic,
                node_idle_duration_s=0 if self.busy or head else 3600,
                waiting_bundles=self.demand if head else [],
            )


def workers(kube):
    return [p for p in pods(kube) if p.metadata.labels["ray-node-type"] == "worker"]


def test_autoscaler_launches_for_demand_respects_max_and_removes_idle_pods(
    cluster, kube, kubeconfig, api_server, pod_service
):
    _, config = cluster
    config = copy.deepcopy(config)
    config["provider"] = pod_service.provider_config(config["provider"])
    config["available_node_types"]["rayWorkerType"].update(min_workers=0, max_workers=3)
    config["max_workers"] = 3
    config["idle_timeout_minutes"] = 0.01
    create_head_pod(KubeCalls(kube), config, pod_service.cache)

    load = LoadMetrics()
    ray_cluster = FakeRayCluster(kube, load)
    gcs = DrainingGcs()
    autoscaler = StandardAutoscaler(lambda: config, load, gcs, update_interval_s=0, prefix_cluster_info=True)

    def round_(n=1):
        """n autoscaler rounds; returns the API requests the last one made."""
        for _ in range(n):
            ray_cluster.tick()
            before = len(api_server.request_log)
            autoscaler.update()
            made = len(api_server.request_log) - before
        return made

    round_(3)
    assert workers(kube) == []  # no demand, no minWorkers: head only
    head_only_round = round_()

    # Five 1-CPU tasks wait; the podType allows three workers.
    ray_cluster.demand = [{"CPU": 1.0}] * 5
    wait_for(lambda: (round_(), len(workers(kube)) >= 3)[1], timeout=60, message="three workers")
    round_(5)
    assert len(workers(kube)) == 3
    assert all(p.status.phase == "Running" for p in workers(kube))
    # A steady round costs nothing, with 4 pods as with 1: the pods come from the operator's cache.
    assert round_() == head_only_round == 0

    # The work is done and the workers are idle: the autoscaler removes them.
    ray_cluster.demand, ray_cluster.busy = [], False
    wait_for(lambda: (round_(), not workers(kube))[1], timeout=60, message="idle workers removed")
    assert len(pods(kube)) == 1  # the head stays
    assert len(gcs.drained) == 3
