"""The operator when what it sees of the API server is wrong (issue 25, after Sieve): the operator (which its
autoscalers ask for their pods) reaches kube-apiserver only through a proxy (tests.harness.watch_faults) that cuts
its watches, delays the watches' events, replays them from an old resourceVersion, or refuses its LISTs. Through each
fault a cluster loses its head, scales up and is deleted, never with two heads or more workers than it may have; and
while the operator cannot list, it makes and deletes nothing (an API that does not answer is not "no pods")."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.harness.local_kube import LocalKube, stack_fixtures
from tests.harness.rayclusters import delete_and_wait_gone, raycluster
from tests.harness.waiting import Sampler, wait_for
from tests.harness.watch_faults import WatchFaultProxy, WatchFaults

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the pod runtime needs root for network namespaces")

kube, no_cluster_left = stack_fixtures("watch-faults")

FAULTS = {
    "cut": (WatchFaults(cut=3.0), "cut"),
    "delay": (WatchFaults(delay=3.0), "delayed"),
    "rewind": (WatchFaults(rewind=True), "rewound"),
    "all-at-once": (WatchFaults(cut=6.0, delay=2.0, rewind=True), "rewound"),
}


@pytest.fixture(scope="module")
def proxy(kube: LocalKube) -> Iterator[WatchFaultProxy]:
    """The module's operator, restarted to reach the API server through the proxy, and the proxy."""
    assert kube.control_plane is not None
    proxy = WatchFaultProxy(kube.control_plane)
    kube.stop_operator()
    kube.start_operator(kubeconfig=proxy.kubeconfig(kube.work / "proxy.kubeconfig"))
    yield proxy
    kube.stop_operator()
    proxy.stop()


@pytest.fixture(autouse=True)
def no_fault_left(proxy: WatchFaultProxy) -> Iterator[None]:
    yield
    proxy.faults = WatchFaults()


def heads_and_workers(kube: LocalKube, name: str) -> tuple[int, int]:
    """The cluster's pods that are not being deleted: heads, workers."""
    pods = kube.pods("ray", f"ray-cluster-name={name}")
    heads = sum(p.metadata.labels.get("ray-node-type") == "head" for p in pods)
    return heads, len(pods) - heads


def running_with_one_worker(kube: LocalKube, name: str) -> None:
    """A cluster of minWorkers 1 and maxWorkers 2 created, once Running with its head and one worker."""
    kube.create(raycluster(name, min_workers=1, max_workers=2))
    kube.wait_phase(name, "ray", "Running", timeout=180)
    wait_for(lambda: heads_and_workers(kube, name) == (1, 1), timeout=120, message="the head and the minWorkers worker")


def two_min_workers(kube: LocalKube, name: str) -> None:
    """The cluster's worker podType patched to minWorkers 2."""
    pod_types = kube.get(name, "ray")["spec"]["podTypes"]
    next(p for p in pod_types if p["name"] == "rayWorkerType")["minWorkers"] = 2
    kube.patch(name, "ray", {"spec": {"podTypes": pod_types}})


@pytest.mark.parametrize("fault", FAULTS)
def test_through_faulty_watches_a_cluster_gets_its_head_back_scales_up_and_goes(kube, proxy, fault):
    faults, counted = FAULTS[fault]
    name = f"watch-{fault}"
    struck = proxy.counts[counted]
    proxy.faults = faults
    running_with_one_worker(kube, name)
    sampled = Sampler(lambda: heads_and_workers(kube, name), interval=0.2)
    kube.core.delete_namespaced_pod(kube.head(name, "ray").metadata.name, "ray")
    kube.wait_phase(name, "ray", "Running", timeout=180, autoscalerRetries=1)
    two_min_workers(kube, name)
    wait_for(lambda: heads_and_workers(kube, name) == (1, 2), timeout=180, message="two workers")
    samples = sampled.stop()
    assert max(heads for heads, _ in samples) == 1 and max(workers for _, workers in samples) <= 2, samples
    assert proxy.counts[counted] > struck, proxy.counts
    delete_and_wait_gone(kube, name, "ray")


def test_while_the_operator_cannot_list_it_makes_and_deletes_nothing_then_converges(kube, proxy):
    running_with_one_worker(kube, "unlisted")
    refused = proxy.counts["lists refused"]
    proxy.faults = WatchFaults(cut=1.0, refuse_lists=True)
    # Every watch of the operator cut, and its LISTs refused: none of its caches can say what exists, so neither it
    # nor its autoscaler (which reads the operator's) may act.
    wait_for(
        lambda: proxy.open_watches == 0 and proxy.counts["lists refused"] > refused,
        timeout=30,
        message="every watch cut and a LIST refused",
        state=lambda: (proxy.open_watches, proxy.counts),
    )
    before = {p.metadata.uid for p in kube.pods("ray", "ray-cluster-name=unlisted")}
    sampled = Sampler(lambda: {p.metadata.uid for p in kube.pods("ray", "ray-cluster-name=unlisted")}, interval=0.2)
    victim = kube.workers("unlisted", "ray")[0].metadata
    kube.core.delete_namespaced_pod(victim.name, "ray")
    two_min_workers(kube, "unlisted")
    # The caches have tried to list again and again (with backoff: ~15 s).
    wait_for(
        lambda: proxy.counts["lists refused"] >= refused + 12,
        timeout=120,
        message="a dozen LISTs refused",
        state=lambda: proxy.counts,
    )
    proxy.faults = WatchFaults()
    samples = sampled.stop()
    made, deleted = [uids - before for uids in samples], [before - uids - {victim.uid} for uids in samples]
    assert not any(made) and not any(deleted), f"pods made {made} or deleted {deleted} while nothing could be listed"
    wait_for(lambda: heads_and_workers(kube, "unlisted") == (1, 2), timeout=180, message="two workers")
    kube.wait_phase("unlisted", "ray", "Running", timeout=120)
    delete_and_wait_gone(kube, "unlisted", "ray")
