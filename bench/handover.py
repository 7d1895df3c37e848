"""Benchmark: clusters moving between active operator replicas, on a real control plane with real Ray heads.

R replicas of `ray-operator run` (one group, each with a Lease) run N RayClusters, each on the replica rendezvous
hashing chooses. Every 100 ms a sampler counts each cluster's live autoscaler processes (their pids are in the
replicas' log, `started the autoscaler (pid …)`). Then:

- SIGKILL of one replica: for each of its clusters, the time from the kill until an autoscaler of another replica
  runs it (p50, p99; target p99 ≤ 30 s);
- a rolling update, as the chart's Deployment makes one (maxSurge 1, maxUnavailable 0): one at a time, a new
  replica starts, becomes ready (/readyz), and an old one gets SIGTERM; the longest time any cluster had no
  autoscaler (target ≤ 30 s).

For both: the moments (samples) at which a cluster had two autoscalers (target 0), and the Ray pods created or
deleted while clusters moved (target 0). It ends with one line per scenario:

    handover: R replicas, N clusters, K moved by SIGKILL: p50 X s, p99 Y s; D duplicate samples, C Ray pods churned
    rolling update: R replicas replaced: longest without an autoscaler X s; D duplicate samples, C Ray pods churned

    python -m bench.handover --replicas 3 --clusters 6      (root: the pod runtime gives pods network namespaces)
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path


from bench.monitor_memory import HEAD_COMMANDS
from bench.scale import percentile
from control_plane import ControlPlane
from control_plane.processes import free_port, stop
from ray_operator.helm_values import raycluster_from_values
from tests.harness.files import ROOT, load_yaml
from tests.harness.waiting import wait_for
from tests.harness.local_kube import LocalKube, autoscaler_alive, pod_gateway, running_stack

NAMESPACE = "handover"


def raycluster(name: str) -> dict:
    """A light cluster: a head without the dashboard, no workers."""
    values = load_yaml(ROOT / "values/cpu-only.yaml")
    values["podTypes"]["rayHeadType"].update(CPU=1, memory="512Mi")
    values["podTypes"]["rayWorkerType"].update(CPU=1, minWorkers=0, maxWorkers=1, memory="512Mi")
    body = raycluster_from_values(values, name, NAMESPACE)
    body["spec"]["headStartRayCommands"] = HEAD_COMMANDS
    return body


class Autoscalers:
    """Each cluster's live autoscaler processes, sampled every 100 ms from a thread of its own: how many moments had
    two for one cluster, and when each cluster last had none."""

    def __init__(self, kube: LocalKube, names: list[str]) -> None:
        self.kube, self.names = kube, names
        self.pids: dict[int, tuple[str, float]] = {}  # autoscaler pid → its cluster, when it was started
        self.duplicates = 0
        self.running: dict[str, set[int]] = {}
        self.gaps: dict[str, list[tuple[float, float]]] = defaultdict(list)  # cluster → (start, end) without one
        self._without: dict[str, float] = {}
        self._read = 0  # of the operators' autoscaler starts
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._sample_forever, daemon=True)

    def start(self) -> Autoscalers:
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _sample_forever(self) -> None:
        while not self._stop.wait(0.1):
            self.sample()

    def sample(self) -> None:
        starts = self.kube.autoscaler_starts()
        for cluster, namespace, pid, started in starts[self._read :]:
            if namespace == NAMESPACE:
                self.pids[pid] = (cluster, started)
        self._read = len(starts)
        running: dict[str, set[int]] = {name: set() for name in self.names}
        for pid, (name, started) in list(self.pids.items()):
            if autoscaler_alive(pid, started):
                running.setdefault(name, set()).add(pid)
            else:
                del self.pids[pid]
        now = time.monotonic()
        with self._lock:
            self.running = running
            for name, pids in running.items():
                self.duplicates += len(pids) > 1
                if not pids and name not in self._without:
                    self._without[name] = now
                elif pids and name in self._without:
                    self.gaps[name].append((self._without.pop(name), now))

    def of(self, name: str) -> set[int]:
        with self._lock:
            return set(self.running.get(name, ()))

    def longest_gap(self, since: float) -> float:
        """The longest time a cluster had no autoscaler since `since` (one still without counts until now)."""
        now = time.monotonic()
        with self._lock:
            spans = [end - max(start, since) for gaps in self.gaps.values() for start, end in gaps if end > since]
            spans += [now - max(start, since) for start in self._without.values()]
        return max(spans, default=0.0)


def ray_pods(kube: LocalKube) -> set[str]:
    return {p.metadata.uid for p in kube.pods(NAMESPACE, "ray-cluster-name")}


def owner(kube: LocalKube, name: str) -> str:
    return (kube.status(name, NAMESPACE).get("operator") or {}).get("identity", "")


def start_replica(kube: LocalKube, identity: str, port: int) -> None:
    kube.start_operator("--identity", identity, "--health-port", str(port))
    wait_for(lambda: ready(port), timeout=60, interval=0.2, message=f"replica {identity} ready")


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def settled(kube: LocalKube, names: list[str], autoscalers: Autoscalers, replicas: set[str]) -> bool:
    """Every cluster Running on a live replica, with exactly one autoscaler."""
    return all(
        kube.status(name, NAMESPACE).get("phase") == "Running"
        and owner(kube, name) in replicas
        and len(autoscalers.of(name)) == 1
        for name in names
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--clusters", type=int, default=6)
    args = parser.parse_args()
    gateway = pod_gateway("netns")
    with tempfile.TemporaryDirectory(prefix="bench-handover-") as work:
        plane = ControlPlane(Path(work) / "control-plane", addresses=[gateway]).start()
        try:
            with running_stack(Path(work) / "stack", control_plane=plane) as kube:
                measure(kube, args.replicas, args.clusters)
        finally:
            plane.stop()


def measure(kube: LocalKube, replica_count: int, cluster_count: int) -> None:
    kube.stop_operator()
    ports = {f"replica-{i}": free_port() for i in range(replica_count)}
    for identity, port in ports.items():
        start_replica(kube, identity, port)
    processes = dict(zip(ports, kube.operators[-replica_count:], strict=True))
    kube.namespace(NAMESPACE)
    names = [f"c{i}" for i in range(cluster_count)]
    for name in names:
        kube.create(raycluster(name))
    autoscalers = Autoscalers(kube, names).start()
    wait_for(
        lambda: settled(kube, names, autoscalers, set(processes)),
        timeout=120 + 60 * cluster_count,
        interval=1,
        message="every cluster Running on a replica, with one autoscaler",
    )
    pods, duplicates = ray_pods(kube), autoscalers.duplicates

    # A replica's SIGKILL: its clusters move to the others once its Lease has run out.
    victim = max(processes, key=lambda identity: sum(owner(kube, name) == identity for name in names))
    moved = {name: autoscalers.of(name) for name in names if owner(kube, name) == victim}
    killed = time.monotonic()
    processes.pop(victim).send_signal(signal.SIGKILL)
    arrived: dict[str, float] = {}

    def all_arrived() -> bool:
        for name, before in moved.items():
            if name not in arrived and autoscalers.of(name) - before:
                arrived[name] = time.monotonic() - killed
        return len(arrived) == len(moved)

    wait_for(all_arrived, timeout=120, interval=0.1, message="every cluster of the killed replica run elsewhere")
    wait_for(
        lambda: settled(kube, names, autoscalers, set(processes)),
        timeout=120,
        interval=1,
        message="settled after the SIGKILL",
    )
    times = sorted(arrived.values())
    churned = len(pods ^ ray_pods(kube))
    print(
        f"handover: {replica_count} replicas, {cluster_count} clusters, {len(moved)} moved by SIGKILL: "
        f"p50 {percentile(times, 0.5):.1f} s, p99 {percentile(times, 0.99):.1f} s; "
        f"{autoscalers.duplicates - duplicates} duplicate samples, {churned} Ray pods churned",
        flush=True,
    )

    # A rolling update: the killed replica's place is taken first, then each old replica is replaced in turn.
    pods, duplicates, began = ray_pods(kube), autoscalers.duplicates, time.monotonic()
    replaced = [victim, *processes]
    for generation, old in enumerate(replaced):
        identity = f"{old}-new{generation}"
        start_replica(kube, identity, free_port())
        processes[identity] = kube.operators[-1]
        if old in processes:
            stop(processes.pop(old), signal.SIGTERM)
    wait_for(
        lambda: settled(kube, names, autoscalers, set(processes)),
        timeout=120,
        interval=1,
        message="settled after the rolling update",
    )
    churned = len(pods ^ ray_pods(kube))
    print(
        f"rolling update: {len(replaced)} replicas replaced: longest without an autoscaler "
        f"{autoscalers.longest_gap(began):.1f} s; {autoscalers.duplicates - duplicates} duplicate samples, "
        f"{churned} Ray pods churned",
        flush=True,
    )
    autoscalers.stop()
    kube.delete_every_raycluster()


if __name__ == "__main__":
    main()
