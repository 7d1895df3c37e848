"""End to end on the pod runtime's loopback network (what a machine without root gets): two clusters whose
heads listen on the same ports, each on its own 127.x address, both Running; a job scales one up and completes."""

from __future__ import annotations

from tests.harness.waiting import wait_for
from tests.e2e.test_e2e import example
from tests.harness.local_kube import stack_fixtures
from tests.harness.rayclusters import delete_and_wait_gone


kube, no_cluster_left = stack_fixtures("e2e-loopback", network="loopback")


def test_two_clusters_on_loopback_addresses(kube, steps):
    clusters = [("cpu-only.yaml", "loop-a", "ray"), ("cpu-only.yaml", "loop-b", "other")]
    with steps("two clusters -> Running, heads on their own loopback addresses"):
        for values_file, name, namespace in clusters:
            kube.create(example(values_file, name, namespace))
        for _, name, namespace in clusters:
            kube.wait_phase(name, namespace, "Running", timeout=180)
        heads = [kube.head(name, namespace).status.pod_ip for _, name, namespace in clusters]
        assert len(set(heads)) == 2 and all(ip.startswith(kube.subnet.split("0.0/")[0]) for ip in heads)
    with steps("job needing more CPUs than the head -> workers, done"):
        min_workers = kube.get("loop-a", "ray")["spec"]["podTypes"][1]["minWorkers"]
        assert kube.run_job("loop-a", "ray", tasks=4) == "SUCCEEDED"
        assert len(kube.workers("loop-a", "ray")) > min_workers
        assert kube.status("loop-b", "other")["phase"] == "Running"
    with steps("both deleted -> no pods, nothing of theirs left"):
        for _, name, namespace in clusters:
            delete_and_wait_gone(kube, name, namespace)
        wait_for(lambda: kube.pod_networks() == 0, timeout=60, message="every pod's network removed")
