"""Benchmark: operator replicas for many RayClusters, on a real control plane (issues: 1,000 RayClusters; 10,000
over 4 replicas).

For each size N: a fresh control plane (etcd, kube-apiserver, kube-controller-manager; no scheduler and no
kubelet, so Ray pods are created and stay Pending — the operator's work without Ray's), the CRD, then R replicas
of `ray-operator run` with their default knobs but no bound on heads starting (running_operator) (one group: each
cluster runs on one of them) and N RayClusters of values/cpu-only.yaml created at once. Prints, per N:

- head created: from each RayCluster's create call returning to its head pod's ADDED event on a watch, p50/p99;
- API requests per RayCluster per minute in steady state (the replicas' Lease renewals included):
  kube-apiserver's `apiserver_request_total` over a window once every head exists, less the same window's count
  before the operators started (the control plane's own traffic), divided by N and by the minutes;
- per replica, over that window: its share of a core, its RSS, its threads, and the clusters it runs (balance: the
  busiest replica's over the mean).

No autoscaler runs (no head ever runs), so the figures are the operators' own; each replica watches every
RayCluster, pod and Service (its cache holds them all) and runs its share. Targets: ≤ 1 request per RayCluster per
minute; every head ≤ 60 s after its RayCluster at N = 1,000 (one replica), ≤ 300 s at N = 10,000 over 4; each
replica ≤ 10% of a core idle and ≤ 500 MB; the busiest replica runs ≤ 1.25× the mean.

    python -m bench.scale                                 (N = 10, 100; one replica; a window of 60 s)
    python -m bench.scale --clusters 10000 --replicas 4 --window 120
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import kubernetes
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.watching import FirstPods
from control_plane import ControlPlane
from control_plane.processes import start, stop
from ray_operator.helm_values import raycluster_from_values
from tests.harness.api import apply_crd
from tests.harness.files import ROOT, load_yaml
from tests.harness.waiting import wait_for

NAMESPACE = "bench"
CONTROLLERS = ["garbagecollector", "namespace", "serviceaccount", "serviceaccount-token"]


def requests_served(plane: ControlPlane) -> float:
    """kube-apiserver's `apiserver_request_total`, summed over every verb, resource and code."""
    text = plane.get("/metrics")
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "apiserver_request_total"
    )


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@contextmanager
def bench_control_plane(work: Path) -> Iterator[tuple[ControlPlane, kubernetes.client.ApiClient]]:
    """A fresh control plane without scheduler or kubelet, with the CRD and the namespace; stopped on exit."""
    plane = ControlPlane(work / "control-plane", controllers=CONTROLLERS, scheduler=False).start()
    try:
        client = kubernetes.config.new_client_from_config(str(plane.kubeconfig))
        apply_crd(client)
        kubernetes.client.CoreV1Api(client).create_namespace(
            kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=NAMESPACE))
        )
        yield plane, client
    finally:
        plane.stop()


@contextmanager
def running_operator(
    plane: ControlPlane, work: Path, *flags: str, name: str = "operator"
) -> Iterator[subprocess.Popen]:
    """`ray-operator run` with its default knobs (and `flags`, which win), its work dir and log named `name`;
    stopped on exit. Without a bound on Ray pods starting (`--max-starting-pods 0`): it counts them per node, and
    with no scheduler (bench_control_plane) every head stays unplaced and would count on every node."""
    operator = start(
        [
            sys.executable,
            "-m",
            "ray_operator",
            "run",
            "--kubeconfig",
            str(plane.kubeconfig),
            "--work-dir",
            str(work / name),
            "--health-port",
            "0",
            "--metrics-port",
            "0",
            "--max-starting-pods",
            "0",
            *flags,
        ],
        work / f"{name}.log",
    )
    try:
        yield operator
    finally:
        stop(operator)


def create_clusters(client: kubernetes.client.ApiClient, size: int) -> dict[str, float]:
    """N RayClusters of values/cpu-only.yaml, created at once; when each create call returned (monotonic)."""
    custom = kubernetes.client.CustomObjectsApi(client)
    values = load_yaml(ROOT / "values/cpu-only.yaml")
    created: dict[str, float] = {}
    for index in range(size):
        name = f"c{index:04d}"
        custom.create_namespaced_custom_object(
            "cluster.ray.io", "v1", NAMESPACE, "rayclusters", raycluster_from_values(values, name, NAMESPACE)
        )
        created[name] = time.monotonic()
    return created


def owners(client: kubernetes.client.ApiClient) -> Counter[str]:
    """How many RayClusters each replica runs (status.operator)."""
    listed: Any = kubernetes.client.CustomObjectsApi(client).list_namespaced_custom_object(
        "cluster.ray.io", "v1", NAMESPACE, "rayclusters"
    )
    return Counter(((item.get("status") or {}).get("operator") or {}).get("identity", "") for item in listed["items"])


def measure(size: int, replicas: int, window: float, work: Path) -> dict[str, Any]:
    with bench_control_plane(work) as (plane, client):
        time.sleep(5)  # the control plane's start-up traffic settles
        before = requests_served(plane)
        time.sleep(window)
        baseline = requests_served(plane) - before
        with ExitStack() as operators:
            started = {
                f"replica-{i}": operators.enter_context(
                    running_operator(plane, work, "--identity", f"replica-{i}", name=f"replica-{i}")
                )
                for i in range(replicas)
            }
            heads = FirstPods(client, NAMESPACE, "ray-node-type=head", time.monotonic)
            created = create_clusters(client, size)
            wait_for(
                lambda: len(heads.seen) >= size,
                timeout=max(120.0, size * 1.0),
                interval=0.5,
                message=f"{size} head pods",
            )
            heads.stop()
            latencies = [heads.seen[name] - created[name] for name in created]

            time.sleep(10)  # past the creations: steady state
            processes = {identity: psutil.Process(operator.pid) for identity, operator in started.items()}
            cpu_before = {identity: process.cpu_times() for identity, process in processes.items()}
            served_before, began = requests_served(plane), time.monotonic()
            time.sleep(window)
            served_after, elapsed = requests_served(plane), time.monotonic() - began
            steady = (served_after - served_before) - baseline * elapsed / window
            owned = owners(client)
            per_replica = {
                identity: {
                    "cpu": max(0.0, sum(process.cpu_times()[:2]) - sum(cpu_before[identity][:2])) / elapsed,
                    "rss_mb": process.memory_info().rss / 2**20,
                    "threads": process.num_threads(),
                    "clusters": owned.get(identity, 0),
                }
                for identity, process in processes.items()
            }
            return {
                "clusters": size,
                "head_p50": statistics.median(latencies),
                "head_p99": percentile(latencies, 0.99),
                "requests": steady / size / (elapsed / 60),
                "replicas": per_replica,
                "balance": max(owned.get(i, 0) for i in processes) / (size / replicas),
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", default="10,100", help="sizes N, comma-separated")
    parser.add_argument("--replicas", type=int, default=1, help="operator replicas R, one group")
    parser.add_argument("--window", type=float, default=60.0, help="seconds each steady-state count lasts")
    args = parser.parse_args()
    print(
        f"{'RayClusters':>11} {'replicas':>8} {'head p50 s':>10} {'head p99 s':>10} {'req/RC/min':>10} "
        f"{'busiest/mean':>12}   (then per replica: clusters, share of a core, RSS, threads)",
        flush=True,
    )
    for size in (int(n) for n in args.clusters.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as work:
            row = measure(size, args.replicas, args.window, Path(work))
        print(
            f"{row['clusters']:>11} {args.replicas:>8} {row['head_p50']:>10.2f} {row['head_p99']:>10.2f} "
            f"{row['requests']:>10.2f} {row['balance']:>12.2f}",
            flush=True,
        )
        for identity, replica in row["replicas"].items():
            print(
                f"    {identity}: {replica['clusters']} clusters, {replica['cpu']:.3f} core, "
                f"{replica['rss_mb']:.0f} MB RSS, {replica['threads']} threads",
                flush=True,
            )


if __name__ == "__main__":
    main()
