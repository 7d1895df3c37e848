"""Benchmark: the operator under random faults (issue 25), with real Ray on a real control plane.

Runs etcd, kube-apiserver, kube-controller-manager and kube-scheduler (control_plane), the pod runtime as their node
with real Ray pods, `--replicas` operator replicas and `--clusters` RayClusters (one worker at least, three at most)
under a steady job load: each cluster runs one job after another, each of `TASKS` one-CPU tasks. Every `--every`
seconds a fault drawn with `--seed` strikes, once the last one has been recovered from:

- operator: SIGKILL of a replica, which is started again (as its Deployment would): recovered once each cluster it
  ran has had an autoscaler started again;
- autoscaler: SIGKILL of one cluster's autoscaler: recovered once another is started for it;
- head: a head pod deleted: recovered once the cluster is Running on a new head;
- worker: a worker pod deleted: recovered once the cluster has its minWorkers again;
- apiserver: kube-apiserver stopped for 2 s, then started: recovered once every cluster is Running;
- compaction: etcd compacted to its newest revision, so that watches from older versions get 410 Gone and list
  again: recovered once every cluster is Running;
- watch: for `WATCH_FAULT_SECONDS` what the replicas and their autoscalers see of the API server is broken, one way
  drawn at random: their watches cut every few seconds, their events delayed, replayed from an old resourceVersion,
  or their LISTs refused (they reach kube-apiserver through tests.harness.watch_faults' proxy): recovered once the
  fault has ended and every cluster is Running;
- kubelet: the node's pod runtime SIGKILLed and started again; its containers die with it (a node's crash: ours
  cannot leave them running as a real container runtime does when only the kubelet restarts), and, as a kubelet,
  the new one reports the Ray pods (restartPolicy Never) Failed, their containers lost: recovered once every cluster
  is Running on a new head with a new worker;
- burst: `--burst` (3) more RayClusters created at once (the operator lets `--max-starting-pods` (3) Ray pods start
  together on the node), recovered once all are Running, then deleted.

A fault not recovered from within its bound (RECOVERY_SECONDS; a burst's that for each of its clusters and one
more) is a violation. Checked every second throughout: no cluster with two heads, no Ray pod whose RayCluster is gone
for 30 s, no cluster with two live autoscalers. A job that fails (its head was lost) is submitted again; every job
must end up completed. The last line: `chaos: F faults, J jobs completed, V invariant violations`, the violations
listed above it.

    python -m bench.chaos --minutes 30 --seed 1            (from the repository, after `pip install -e '.[test]'`)
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from control_plane import ControlPlane
from control_plane.processes import stop
from pod_runtime.network import network_kind
from ray_operator.helm_values import raycluster_from_values
from tests.harness.files import ROOT, load_yaml
from tests.harness.waiting import wait_for
from tests.harness.local_kube import LocalKube, job_client, pod_gateway
from tests.harness.watch_faults import WatchFaultProxy, WatchFaults

NAMESPACE = "chaos"
TASKS, TASK_SECONDS = 3, 2.0
RECOVERY_SECONDS = 60.0
ORPHAN_SECONDS = 30.0  # a Ray pod's RayCluster gone this long, and the pod not being deleted: an orphan
JOB_SECONDS = 300.0  # for one job to end, whatever happens to its cluster
RETRY_SECONDS = 1.0  # between a job's failed attempt and the next
WATCH_FAULT_SECONDS = 20.0
WATCH_FAULTS = {
    "cut": WatchFaults(cut=3.0),
    "delayed": WatchFaults(delay=3.0),
    "replayed": WatchFaults(rewind=True),
    "unlisted": WatchFaults(cut=2.0, refuse_lists=True),
}
FAULTS = ("operator", "autoscaler", "head", "worker", "apiserver", "compaction", "watch", "kubelet", "burst")


def raycluster(name: str, min_workers: int = 1, max_workers: int = 3) -> dict[str, Any]:
    values = load_yaml(ROOT / "values/cpu-only.yaml")
    values["idleTimeoutMinutes"] = 0.2
    values["podTypes"]["rayHeadType"].update(memory="512Mi", rayResources={"CPU": 0})  # tasks go to workers
    values["podTypes"]["rayWorkerType"].update(minWorkers=min_workers, maxWorkers=max_workers, memory="512Mi")
    return raycluster_from_values(values, name, NAMESPACE)


class Jobs(threading.Thread):
    """One cluster's job load: one job after another, each submitted again until it completes."""

    def __init__(self, kube: LocalKube, cluster: str, stopping: threading.Event) -> None:
        super().__init__(daemon=True, name=f"jobs of {cluster}")
        self.kube, self.cluster, self.stopping = kube, cluster, stopping
        self.completed = self.attempts_failed = 0
        self.unfinished = ""  # why a job did not complete

    def run(self) -> None:
        started = time.monotonic()
        while True:
            outcome = self._attempt()
            if outcome == "SUCCEEDED":
                self.completed += 1
                if self.stopping.is_set():
                    return
                started = time.monotonic()
                continue
            self.attempts_failed += 1
            time.sleep(RETRY_SECONDS)  # the head is going or coming: not a request a millisecond meanwhile
            if time.monotonic() - started > JOB_SECONDS:
                self.unfinished = f"{self.cluster}: a job did not complete in {JOB_SECONDS:.0f}s ({outcome})"
                return

    def _attempt(self) -> str:
        """One submission of the job, to its end: its final status, or why it could not be run."""
        from ray.job_submission import JobStatus

        try:
            head = wait_for(
                lambda: (lambda h: h if h and h.status.pod_ip and h.status.phase == "Running" else None)(
                    self.kube.head(self.cluster, NAMESPACE)
                ),
                timeout=RECOVERY_SECONDS,
                interval=1,
                message=f"{self.cluster}'s head",
            )
            client = job_client(head.status.pod_ip, self.kube.ray_token(self.cluster, NAMESPACE))
            script = (
                f"import ray, time\nray.init()\n@ray.remote(num_cpus=1)\ndef work(i):\n    time.sleep({TASK_SECONDS})\n"
                f"    return i\nray.get([work.remote(i) for i in range({TASKS})])\n"
            )
            job = client.submit_job(entrypoint=f'python -c "{script}"', entrypoint_num_cpus=0)
            ended = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED)
            status = wait_for(
                lambda: (lambda s: s if s in ended else None)(client.get_job_status(job)),
                timeout=JOB_SECONDS,
                interval=1,
                message=f"{self.cluster}'s job",
            )
            return str(status)
        except Exception as error:  # noqa: BLE001 - the head went, its dashboard with it, or the API server restarted
            return f"not run: {str(error)[:200]}"


class Invariants(threading.Thread):
    """The invariants, checked every second: each violation recorded once."""

    def __init__(self, kube: LocalKube, stopping: threading.Event) -> None:
        super().__init__(daemon=True, name="invariants")
        self.kube, self.stopping = kube, stopping
        self.violations: list[str] = []
        self._orphans_since: dict[str, float] = {}

    def record(self, violation: str) -> None:
        if violation not in self.violations:
            self.violations.append(violation)
            print(f"VIOLATION {violation}", flush=True)

    def run(self) -> None:
        while not self.stopping.wait(1.0):
            try:
                self.check()
            except Exception as error:  # noqa: BLE001 - the API server restarting: looked at next second
                if "Connection refused" not in str(error) and "Max retries" not in str(error):
                    print(f"(invariants not checked: {error})", flush=True)

    def check(self) -> None:
        clusters = {
            item["metadata"]["name"]
            for item in self.kube.custom.list_namespaced_custom_object(
                "cluster.ray.io", "v1", NAMESPACE, "rayclusters"
            )["items"]
        }
        heads: Counter[str] = Counter()
        now = time.monotonic()
        for pod in self.kube.pods(NAMESPACE, "ray-cluster-name"):
            cluster = pod.metadata.labels["ray-cluster-name"]
            if pod.metadata.labels.get("ray-node-type") == "head":
                heads[cluster] += 1
            if cluster not in clusters:
                since = self._orphans_since.setdefault(pod.metadata.name, now)
                if now - since > ORPHAN_SECONDS:
                    self.record(f"orphan: the pod {pod.metadata.name} outlived its RayCluster {cluster}")
        for cluster, count in heads.items():
            if count > 1:
                self.record(f"{cluster}: {count} heads at once")
        for cluster, pids in self.kube.live_autoscalers(NAMESPACE).items():
            if len(pids) > 1:
                self.record(f"{cluster}: {len(pids)} autoscalers at once (pids {sorted(pids)})")


class Chaos:
    def __init__(
        self,
        kube: LocalKube,
        plane: ControlPlane,
        clusters: list[str],
        replicas: int,
        seed: int,
        burst: int,
        starting: int,
    ) -> None:
        self.kube, self.plane, self.clusters, self.burst, self.starting = kube, plane, clusters, burst, starting
        self.random = random.Random(seed)
        self.proxy = WatchFaultProxy(plane, seed)
        self.kubeconfig = self.proxy.kubeconfig(kube.work / "proxy.kubeconfig")
        self.operators: dict[str, subprocess.Popen] = {}
        self.started = 0
        for _ in range(replicas):
            self.start_replica()
        self.recovery: dict[str, list[float]] = {}

    def start_replica(self) -> None:
        self.started += 1
        identity = f"chaos-{self.started}"
        self.operators[identity] = self.kube.start_operator(
            "--identity", identity, "--max-starting-pods", str(self.starting), kubeconfig=self.kubeconfig
        )

    def all_running(self, names: list[str] | None = None) -> bool:
        return all(self.kube.status(name, NAMESPACE).get("phase") == "Running" for name in names or self.clusters)

    def strike(self, kind: str) -> tuple[str, Callable[[], bool], float]:
        """Inject one fault: what it was, when it counts as recovered from, and within what bound."""
        kube, cluster = self.kube, self.random.choice(self.clusters) if self.clusters else ""  # none: bursts alone
        if kind == "operator":
            identity = self.random.choice(sorted(self.operators))
            ran = [n for n in self.clusters if owner(kube, n) == identity]
            before = {n: kube.live_autoscalers(NAMESPACE).get(n, set()) for n in ran}
            stop(self.operators.pop(identity), signal.SIGKILL)
            self.start_replica()
            return (
                f"SIGKILL of the replica {identity} (ran {', '.join(ran) or 'nothing'})",
                lambda: (
                    self.all_running() and all(kube.live_autoscalers(NAMESPACE).get(n, set()) - before[n] for n in ran)
                ),
                RECOVERY_SECONDS,
            )
        if kind == "autoscaler":
            live = sorted(kube.live_autoscalers(NAMESPACE).get(cluster, set()))
            if not live:
                return f"no autoscaler of {cluster} to kill", self.all_running, RECOVERY_SECONDS
            psutil.Process(live[0]).send_signal(signal.SIGKILL)
            return (
                f"SIGKILL of {cluster}'s autoscaler (pid {live[0]})",
                lambda: self.all_running() and bool(kube.live_autoscalers(NAMESPACE).get(cluster, set()) - {live[0]}),
                RECOVERY_SECONDS,
            )
        if kind == "head":
            head = kube.head(cluster, NAMESPACE)
            kube.core.delete_namespaced_pod(head.metadata.name, NAMESPACE)
            return (
                f"{cluster}'s head pod {head.metadata.name} deleted",
                lambda: (
                    self.all_running()
                    and (lambda h: h is not None and h.metadata.uid != head.metadata.uid)(kube.head(cluster, NAMESPACE))
                ),
                RECOVERY_SECONDS,
            )
        if kind == "worker":
            workers = kube.workers(cluster, NAMESPACE)
            if not workers:
                return f"no worker of {cluster} to delete", self.all_running, RECOVERY_SECONDS
            victim = self.random.choice(workers).metadata.name
            kube.core.delete_namespaced_pod(victim, NAMESPACE)
            return (
                f"{cluster}'s worker pod {victim} deleted",
                lambda: self.all_running() and len(kube.workers(cluster, NAMESPACE)) >= 1,
                RECOVERY_SECONDS,
            )
        if kind == "apiserver":
            self.plane.restart_apiserver(down_for=2.0)
            return "kube-apiserver stopped for 2 s and started", self.all_running, RECOVERY_SECONDS
        if kind == "compaction":
            revision = int(str(kube.core.list_namespaced_pod(NAMESPACE).metadata.resource_version))
            self.plane.compact(revision)
            return f"etcd compacted to revision {revision}", self.all_running, RECOVERY_SECONDS
        if kind == "watch":
            way = self.random.choice(sorted(WATCH_FAULTS))
            self.proxy.faults = WATCH_FAULTS[way]
            ends = time.monotonic() + WATCH_FAULT_SECONDS
            return (
                f"the replicas' watches {way} for {WATCH_FAULT_SECONDS:.0f} s",
                lambda: self.end_watch_faults(ends) and self.all_running(),
                WATCH_FAULT_SECONDS + RECOVERY_SECONDS,
            )
        if kind == "kubelet":
            lost = {p.metadata.uid for p in kube.pods(NAMESPACE, "ray-cluster-name") if p.status.phase == "Running"}
            kube.restart_runtime()
            return (
                f"the node's pod runtime stopped and started ({len(lost)} Ray pods lost)",
                lambda: self.all_running() and all(self.runs_anew(n, lost) for n in self.clusters),
                RECOVERY_SECONDS,
            )
        burst = [f"burst-{self.random.randrange(10**6)}" for _ in range(self.burst)]
        for name in burst:
            kube.create(raycluster(name, min_workers=0, max_workers=1))
        return (
            f"{self.burst} RayClusters created at once",
            lambda: self.all_running(burst) and self.end_burst(burst),
            RECOVERY_SECONDS * (self.burst + 1),
        )

    def runs_anew(self, cluster: str, lost: set[str]) -> bool:
        """Whether the cluster runs a head and a worker, neither of them one of the `lost` pods."""
        pods = [
            p
            for p in self.kube.pods(NAMESPACE, f"ray-cluster-name={cluster}")
            if p.metadata.uid not in lost and p.status.phase == "Running"
        ]
        return {p.metadata.labels.get("ray-node-type") for p in pods} == {"head", "worker"}

    def end_watch_faults(self, ends: float) -> bool:
        """Whether the watch fault has ended (ending it once its time has come)."""
        if time.monotonic() < ends:
            return False
        self.proxy.faults = WatchFaults()
        return True

    def end_burst(self, burst: list[str]) -> bool:
        """Ends a burst once its clusters all run: says how many restarts (failed heads, autoscalers) it took them,
        then deletes them."""
        restarts = sum(int(self.kube.status(name, NAMESPACE).get("autoscalerRetries") or 0) for name in burst)
        print(f"     burst: {len(burst)} RayClusters Running after {restarts} restarts among them", flush=True)
        for name in burst:
            kube_delete_quietly(self.kube, name)
        return True


def owner(kube: LocalKube, cluster: str) -> str:
    """The identity of the replica that runs a cluster (its status.operator)."""
    return str((kube.status(cluster, NAMESPACE).get("operator") or {}).get("identity", ""))


def kube_delete_quietly(kube: LocalKube, name: str) -> None:
    try:
        kube.delete(name, NAMESPACE)
    except Exception:  # noqa: BLE001 - gone already
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long faults are injected")
    parser.add_argument("--seed", type=int, default=1, help="of the faults drawn")
    parser.add_argument("--every", type=float, default=20.0, help="seconds between a recovery and the next fault")
    parser.add_argument("--clusters", type=int, default=2, help="RayClusters under a job load (0: bursts alone)")
    parser.add_argument("--replicas", type=int, default=2, help="operator replicas")
    parser.add_argument("--burst", type=int, default=3, help="RayClusters a burst creates at once")
    parser.add_argument(
        "--max-starting-pods", type=int, default=3, help="the replicas' bound on Ray pods starting on one node"
    )
    parser.add_argument("--faults", default=",".join(FAULTS), help="the kinds of fault drawn from, comma-separated")
    parser.add_argument("--network", choices=["auto", "netns", "loopback"], default="auto", help="the pod runtime's")
    args = parser.parse_args()
    kinds = [kind.strip() for kind in args.faults.split(",")]
    if not kinds or set(kinds) - set(FAULTS):
        parser.error(f"--faults: {args.faults!r} is not a list of {', '.join(FAULTS)}")
    if args.clusters < 1 and kinds != ["burst"]:
        parser.error("--clusters 0: only bursts (--faults burst) strike no cluster of the job load")
    network = network_kind(args.network)
    with tempfile.TemporaryDirectory(prefix="bench-chaos-") as work:
        gateway = pod_gateway(network)
        plane = ControlPlane(Path(work) / "control-plane", addresses=[gateway]).start()
        kube = LocalKube(Path(work), network=network, control_plane=plane)
        stopping, load_stopping = threading.Event(), threading.Event()
        chaos: Chaos | None = None
        try:
            kube.start_server()
            kube.setup_crd()
            kube.start_runtime()
            clusters = [f"chaos-{i}" for i in range(args.clusters)]
            for name in clusters:
                kube.create(raycluster(name))
            chaos = Chaos(kube, plane, clusters, args.replicas, args.seed, args.burst, args.max_starting_pods)
            wait_for(chaos.all_running, timeout=300, interval=1, message="every cluster Running")
            invariants = Invariants(kube, stopping)
            invariants.start()
            loads = [Jobs(kube, name, load_stopping) for name in clusters]
            for load in loads:
                load.start()
            faults: Counter[str] = Counter()
            end = time.monotonic() + args.minutes * 60
            while time.monotonic() < end:
                stopping.wait(args.every)
                kind = chaos.random.choice(kinds)
                began = time.monotonic()
                what, recovered, bound = chaos.strike(kind)
                faults[kind] += 1
                try:
                    wait_for(recovered, timeout=bound, interval=0.5, message="recovery")
                    took = time.monotonic() - began
                    print(f"{kind:>10}: {what}; recovered in {took:.1f} s", flush=True)
                    chaos.recovery.setdefault(kind, []).append(took)
                except AssertionError:
                    invariants.record(f"{kind}: {what}: not recovered from in {bound:.0f} s")
                    wait_for(chaos.all_running, timeout=600, interval=1, message="every cluster Running again")
            load_stopping.set()
            for load in loads:
                load.join(timeout=JOB_SECONDS + 2 * RECOVERY_SECONDS)
                if load.is_alive() or load.unfinished:
                    invariants.record(load.unfinished or f"{load.cluster}: its last job still running")
            stopping.set()
            invariants.join()
            print(
                "faults: "
                + ", ".join(
                    f"{kind} {count} (recovered in ≤ {max(chaos.recovery.get(kind, [0])):.0f} s)"
                    for kind, count in sorted(faults.items())
                ),
                flush=True,
            )
            completed = sum(load.completed for load in loads)
            print(f"jobs: {completed} completed, {sum(load.attempts_failed for load in loads)} attempts failed")
            for violation in invariants.violations:
                print(f"  violation: {violation}")
            print(
                f"chaos: {sum(faults.values())} faults, {completed} jobs completed, "
                f"{len(invariants.violations)} invariant violations",
                flush=True,
            )
        finally:
            stopping.set()
            load_stopping.set()
            kube.close()
            if chaos is not None:
                chaos.proxy.stop()
            plane.stop()


if __name__ == "__main__":
    main()
