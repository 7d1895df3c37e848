"""Benchmark: reconcile latency under a steady trickle of spec changes, at 1 and at 50 RayClusters (issue 17).

For each size N: a fresh control plane without scheduler or kubelet (bench.scale's: Ray pods are created and stay
Pending, so the figures are the operator's own), `ray-operator run` with its default knobs, N RayClusters, each
reconciled once (status.observedGeneration 1). Then `--changes` spec changes (upscalingSpeed, which only
reconfigures the autoscaler), one every `--gap` seconds, round robin over the clusters; a change's latency runs
from its patch call to the watch event whose status.observedGeneration reaches the patched generation. Prints
p50/p99 per N, and p99 at the largest N over p99 at the smallest. Target: p99 at 50 clusters ≤ 2× its value at 1.

    python -m bench.reconcile_latency                     (N = 1, 50)
    python -m bench.reconcile_latency --clusters 1,50,200 --changes 200
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes

from bench.scale import NAMESPACE, bench_control_plane, create_clusters, percentile, running_operator
from bench.watching import EventWatch
from tests.harness.waiting import wait_for


class GenerationWatch(EventWatch):
    """When each RayCluster's status.observedGeneration reached each value (monotonic), from one watch."""

    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        self.reached: dict[str, list[tuple[int, float]]] = {}
        self._lock = threading.Lock()
        super().__init__(
            self._record,
            kubernetes.client.CustomObjectsApi(client).list_namespaced_custom_object,
            "cluster.ray.io",
            "v1",
            NAMESPACE,
            "rayclusters",
        )

    def _record(self, event: dict[str, Any]) -> None:
        body = event["object"]
        observed = (body.get("status") or {}).get("observedGeneration")
        if observed is not None:
            with self._lock:
                self.reached.setdefault(body["metadata"]["name"], []).append((observed, time.monotonic()))

    def when(self, name: str, generation: int, since: float) -> float | None:
        """When the cluster's status first showed `generation` (or a later one) after `since`."""
        with self._lock:
            return next((at for seen, at in self.reached.get(name, []) if seen >= generation and at >= since), None)


def measure(size: int, changes: int, gap: float, work: Path) -> list[float]:
    """Each change's latency, in seconds."""
    with bench_control_plane(work) as (plane, client), running_operator(plane, work):
        watch = GenerationWatch(client)
        names = list(create_clusters(client, size))
        wait_for(
            lambda: all(watch.when(name, 1, 0.0) for name in names),
            timeout=max(120.0, size * 2.0),
            interval=0.5,
            message=f"{size} RayClusters reconciled once",
        )
        time.sleep(10)  # past the creations (each head's ADDED event, its status): steady state
        custom = kubernetes.client.CustomObjectsApi(client)
        patched: list[tuple[str, int, float]] = []
        for index in range(changes):
            name = names[index % size]
            began = time.monotonic()
            body: Any = custom.patch_namespaced_custom_object(
                "cluster.ray.io", "v1", NAMESPACE, "rayclusters", name, {"spec": {"upscalingSpeed": 1.0 + index % 7}}
            )
            patched.append((name, body["metadata"]["generation"], began))
            time.sleep(max(0.0, began + gap - time.monotonic()))
        wait_for(
            lambda: all(watch.when(*change) for change in patched),
            timeout=120,
            interval=0.2,
            message="every change reconciled",
        )
        watch.stop()
        return [watch.when(name, generation, began) - began for name, generation, began in patched]  # type: ignore[operator]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", default="1,50", help="sizes N, comma-separated, ascending")
    parser.add_argument("--changes", type=int, default=200, help="spec changes per size")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between two changes")
    args = parser.parse_args()
    print(f"{'RayClusters':>11} {'changes':>7} {'p50 ms':>7} {'p99 ms':>7}", flush=True)
    p99s = []
    for size in (int(n) for n in args.clusters.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as work:
            latencies = measure(size, args.changes, args.gap, Path(work))
        p99s.append(percentile(latencies, 0.99))
        print(
            f"{size:>11} {len(latencies):>7} {statistics.median(latencies) * 1000:>7.0f} {p99s[-1] * 1000:>7.0f}",
            flush=True,
        )
    print(f"p99 at the largest size / at the smallest: {p99s[-1] / p99s[0]:.2f} (target ≤ 2)", flush=True)


if __name__ == "__main__":
    main()
