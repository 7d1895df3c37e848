"""Benchmark: one operator for many RayClusters, on a real control plane (issue: 1,000 RayClusters).

For each size N: a fresh control plane (etcd, kube-apiserver, kube-controller-manager; no scheduler and no
kubelet, so Ray pods are created and stay Pending — the operator's work without Ray's), the CRD, then
`ray-operator run` with its default knobs and N RayClusters of values/cpu-only.yaml created at once. Prints,
per N:

- head created: from each RayCluster's create call returning to its head pod's ADDED event on a watch, p50/p99;
- API requests per RayCluster per minute in steady state: kube-apiserver's `apiserver_request_total` over a
  window once every head exists, less the same window's count before the operator started (the control
  plane's own traffic), divided by N and by the minutes;
- the operator's share of a core and its RSS over that window, and its threads.

No autoscaler runs (no head ever runs), so the figures are the operator's own. Targets (issue 17): ≤ 1 request
per RayCluster per minute; every head ≤ 60 s after its RayCluster at N = 1,000; ≤ 10% of a core idle and
≤ 300 MB RSS.

    python -m bench.scale                                 (N = 10, 100; a window of 60 s)
    python -m bench.scale --clusters 10,100,1000 --window 120
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import kubernetes
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.watching import FirstPods
from control_plane import ControlPlane
from control_plane.processes import start, stop
from ray_operator.helm_values import raycluster_from_values
from tests.conftest import ROOT, apply_crd, load_yaml, wait_for

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
        kubernetes.client.CoreV1Api(client).create_namespace({"metadata": {"name": NAMESPACE}})
        yield plane, client
    finally:
        plane.stop()


@contextmanager
def running_operator(plane: ControlPlane, work: Path, *flags: str) -> Iterator[subprocess.Popen]:
    """`ray-operator run` with its default knobs (and `flags`, which win); stopped on exit."""
    operator = start(
        [sys.executable, "-m", "ray_operator", "run", "--kubeconfig", str(plane.kubeconfig),
         "--work-dir", str(work / "operator"), "--health-port", "0", "--metrics-port", "0", *flags],
        work / "operator.log",
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


def measure(size: int, window: float, work: Path) -> dict[str, float]:
    with bench_control_plane(work) as (plane, client):
        time.sleep(5)  # the control plane's start-up traffic settles
        before = requests_served(plane)
        time.sleep(window)
        baseline = requests_served(plane) - before
        with running_operator(plane, work) as operator:
            heads = FirstPods(client, NAMESPACE, "ray-node-type=head", time.monotonic)
            created = create_clusters(client, size)
            wait_for(lambda: len(heads.seen) >= size, timeout=max(120.0, size * 1.0), interval=0.5,
                     message=f"{size} head pods")
            heads.stop()
            latencies = [heads.seen[name] - created[name] for name in created]

            time.sleep(10)  # past the creations: steady state
            process = psutil.Process(operator.pid)
            cpu_before, served_before, began = process.cpu_times(), requests_served(plane), time.monotonic()
            time.sleep(window)
            cpu_after, served_after, elapsed = process.cpu_times(), requests_served(plane), time.monotonic() - began
            steady = (served_after - served_before) - baseline * elapsed / window
            return {
                "clusters": size,
                "head_p50": statistics.median(latencies),
                "head_p99": percentile(latencies, 0.99),
                "requests": steady / size / (elapsed / 60),
                "cpu": max(0.0, (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)) / elapsed,
                "rss_mb": process.memory_info().rss / 2**20,
                "threads": process.num_threads(),
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", default="10,100", help="sizes N, comma-separated")
    parser.add_argument("--window", type=float, default=60.0, help="seconds each steady-state count lasts")
    args = parser.parse_args()
    print(f"{'RayClusters':>11} {'head p50 s':>10} {'head p99 s':>10} {'req/RC/min':>10} {'CPU core':>8} "
          f"{'RSS MB':>7} {'threads':>7}", flush=True)
    for size in (int(n) for n in args.clusters.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as work:
            row = measure(size, args.window, Path(work))
        print(f"{row['clusters']:>11} {row['head_p50']:>10.2f} {row['head_p99']:>10.2f} {row['requests']:>10.1f} "
              f"{row['cpu']:>8.3f} {row['rss_mb']:>7.0f} {row['threads']:>7}", flush=True)


if __name__ == "__main__":
    main()
