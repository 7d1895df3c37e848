"""Benchmark: what a running RayCluster costs its operator replica, with 1, 10 and 20 running clusters (targets: ≤ 10 MB
PSS and ≤ 0.5% of a core per running cluster).

Runs the local stack the operator tests use (the project's API server, the pod runtime with real Ray heads, light:
no dashboard), with `ray-operator run` (the console script, as the image starts it) at its production rhythm (an
autoscaler round every 5 s, status every 30 s), adds RayClusters step by step, and once all are Running (and
`--settle` seconds more) samples, over a window of at least 10 autoscaler rounds, the operator's process tree: the
operator, the monitors' forkserver and one monitor per cluster. The Ray pods are not the operator's cost and are not
counted. Prints, per step:

- the tree's peak USS and PSS, and the marginal PSS per running cluster from the step before (PSS splits the pages
  every monitor shares with the forkserver between their users: the fair figure; USS undercounts it);
- the tree's CPU over the window as a share of a core, and the marginal share per running cluster;
- the mean monitor's USS (its private memory);
- the API requests of the operator (User-Agent ray-operator; its autoscalers make none: they ask the operator) per
  RayCluster per minute (target: ≤ 1).

    python -m bench.monitor_memory            (from the repository, after `pip install -e '.[test]'`)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from autoscaler_bridge.kube_client import USER_AGENT
from pod_runtime.network import network_kind
from ray_operator.helm_values import raycluster_from_values
from tests.harness.files import ROOT, load_yaml
from tests.harness.waiting import wait_for
from tests.harness.local_kube import LocalKube, running_stack

MB = 1_000_000
TARGET_MB = 10
TARGET_CORE = 0.005
RHYTHM = ["--autoscaler-interval", "5", "--autoscaler-status-interval", "30", "--stall-rounds", "12"]  # production
NAMESPACE = "bench"
# Heads without the dashboard: lighter pods for the same monitor work (the autoscaler reads the GCS only).
HEAD_COMMANDS = ["ray stop", "ulimit -n 65536; ray start --head --port=6379 --no-monitor --include-dashboard=false"]


@dataclass
class Sample:
    uss: int
    pss: int
    monitors_uss: list[int]
    cpu_seconds: dict[int, float]  # pid → user + system seconds so far
    taken: float  # time.monotonic() once the sample was complete


def raycluster(name: str) -> dict:
    values = load_yaml(ROOT / "values/cpu-only.yaml")
    values["podTypes"]["rayHeadType"]["memory"] = "512Mi"
    values["podTypes"]["rayWorkerType"].update(minWorkers=0, maxWorkers=2)
    body = raycluster_from_values(values, name, NAMESPACE)
    body["spec"]["headStartRayCommands"] = HEAD_COMMANDS
    return body


def operator_tree(kube: LocalKube) -> Sample:
    """USS and PSS of the operator, its forkserver and its monitors; the monitors' USS one by one."""
    operator = psutil.Process(kube.operators[-1].pid)
    uss = pss = 0
    monitors = []
    cpu: dict[int, float] = {}
    for process in [operator, *operator.children(recursive=True)]:
        try:
            memory = process.memory_full_info()
            is_monitor = "multiprocessing.forkserver" in " ".join(process.parent().cmdline())
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        uss, pss = uss + memory.uss, pss + memory.pss
        cpu[process.pid] = times.user + times.system
        if is_monitor:
            monitors.append(memory.uss)
    return Sample(uss, pss, monitors, cpu, time.monotonic())


def core_share(first: Sample, last: Sample) -> float:
    """The tree's CPU between two samples as a share of one core (processes present in both)."""
    return sum(
        last.cpu_seconds[pid] - first.cpu_seconds[pid] for pid in first.cpu_seconds.keys() & last.cpu_seconds.keys()
    ) / (last.taken - first.taken)


def operator_serving(kube: LocalKube) -> bool:
    """Whether the operator has started up as far as serving its metrics."""
    try:
        return kube.metric("ray_operator_clusters", phase="Running") is not None
    except OSError:
        return False


def peak_over(kube: LocalKube, seconds: float) -> tuple[Sample, float]:
    """The largest tree seen, sampled every second for `seconds` (several autoscaler rounds), and the tree's share
    of a core between the first and the last (at least two: a loaded machine may take seconds over one sample)."""
    samples = [operator_tree(kube)]
    while len(samples) < 2 or samples[-1].taken < samples[0].taken + seconds:
        time.sleep(1)
        samples.append(operator_tree(kube))
    return max(samples, key=lambda sample: sample.uss), core_share(samples[0], samples[-1])


def operator_requests(kube: LocalKube) -> int:
    """Requests of the operator and its autoscalers in the API server's log (which keeps the latest 100,000)."""
    log = kube.server.request_log
    if len(log) == log.maxlen:
        raise RuntimeError("the API server's request log is full: the count would be short")
    return sum(agent == USER_AGENT for _, _, agent in list(log))


def all_running(kube: LocalKube, names: list[str], monitors: int) -> bool:
    phases_ok = all(kube.status(name, NAMESPACE).get("phase") == "Running" for name in names)
    return phases_ok and len(operator_tree(kube).monitors_uss) == monitors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="1,10,20", help="numbers of running clusters to measure at, ascending")
    parser.add_argument("--window", type=float, default=60, help="seconds sampled at each step (≥ 10 rounds of 5 s)")
    parser.add_argument("--settle", type=float, default=30, help="seconds waited once every cluster is Running")
    parser.add_argument("--network", choices=["auto", "netns", "loopback"], default="auto", help="the pod runtime's")
    args = parser.parse_args()
    steps = [int(n) for n in args.steps.split(",")]
    with (
        tempfile.TemporaryDirectory(prefix="bench-memory-") as work,
        running_stack(Path(work), network=network_kind(args.network)) as kube,
    ):
        kube.stop_operator()
        kube.start_operator(*RHYTHM)
        wait_for(lambda: operator_serving(kube), timeout=60, message="the operator serving /metrics")
        base, base_core = peak_over(kube, args.window)
        print(
            f"operator tree with no cluster: USS {base.uss / MB:.1f} MB, PSS {base.pss / MB:.1f} MB, "
            f"{100 * base_core:.2f}% of a core",
            flush=True,
        )
        print(
            f"{'clusters':>8} {'tree USS':>9} {'tree PSS':>9} {'PSS/cluster':>12} {'core %':>7} {'core %/cluster':>14} "
            f"{'monitor USS':>12} {'req/RC/min':>10}   (MB = 10^6 bytes; per cluster: the marginal from the step "
            f"before; targets ≤ {TARGET_MB} MB, ≤ {100 * TARGET_CORE}% of a core, ≤ 1 request per RayCluster per "
            "minute)",
            flush=True,
        )
        names: list[str] = []
        before, before_core, before_count = base, base_core, 0
        for count in steps:
            while len(names) < count:
                names.append(f"bench-{len(names)}")
                kube.create(raycluster(names[-1]))
            started = time.monotonic()
            wait_for(
                lambda: all_running(kube, names, len(names)),
                timeout=120 + 60 * count,
                interval=1,
                message=f"{count} clusters Running, each with its autoscaler",
            )
            to_running = time.monotonic() - started
            time.sleep(args.settle)
            requests, began = operator_requests(kube), time.monotonic()
            peak, core = peak_over(kube, args.window)
            per_minute = (operator_requests(kube) - requests) / count / ((time.monotonic() - began) / 60)
            added = count - before_count
            pss_each, core_each = (peak.pss - before.pss) / added / MB, (core - before_core) / added
            print(
                f"{count:>8} {peak.uss / MB:>8.1f}  {peak.pss / MB:>8.1f}  {pss_each:>11.1f}  {100 * core:>6.2f}  "
                f"{100 * core_each:>13.2f}  {statistics.mean(peak.monitors_uss) / MB:>11.1f}  {per_minute:>10.2f}"
                f"   ({to_running:.0f} s to Running)",
                flush=True,
            )
            before, before_core, before_count = peak, core, count
        kube.delete_every_raycluster()


if __name__ == "__main__":
    main()
