"""Benchmark: the operator's extra memory per managed RayCluster, with 1, 5 and 10 clusters (target: ≤ 60 MB each).

Runs the local stack the operator tests use (the project's API server, the pod runtime with real Ray heads,
`ray-operator run`), adds RayClusters 1 → 5 → 10, and once all are Running samples, over several autoscaler
rounds, the USS and PSS of the operator's process tree: the operator, the monitors' forkserver and one
monitor per cluster. The Ray pods are not the operator's cost and are not counted. Prints, per step, the tree's
peak, the extra over the operator with no cluster divided by the number of clusters, and the mean monitor.
The first cluster also starts the forkserver, whose memory every monitor shares: the extra per cluster falls
as clusters are added, and PSS (shared pages split between their users) is the fair figure; USS undercounts it.
Over the same window, which begins `--settle` seconds after the last cluster is Running (past its autoscaler's
first rounds, their Events and status writes), it counts the API requests of the operator and its autoscalers
(User-Agent ray-operator: the pod runtime's own are not the operator's), per RayCluster per minute: the steady
state with autoscalers running (target: ≤ 1).

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
from tests.conftest import ROOT, load_yaml, wait_for
from tests.local_kube import LocalKube, running_stack

MB = 1_000_000
TARGET_MB = 60
NAMESPACE = "bench"
# Heads without the dashboard: lighter pods for the same monitor work (the autoscaler reads the GCS only).
HEAD_COMMANDS = ["ray stop", "ulimit -n 65536; ray start --head --port=6379 --no-monitor --include-dashboard=false"]


@dataclass
class Sample:
    uss: int
    pss: int
    monitors_uss: list[int]


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
    for process in [operator, *operator.children(recursive=True)]:
        try:
            memory = process.memory_full_info()
            is_monitor = "multiprocessing.forkserver" in " ".join(process.parent().cmdline())
        except psutil.NoSuchProcess:
            continue
        uss, pss = uss + memory.uss, pss + memory.pss
        if is_monitor:
            monitors.append(memory.uss)
    return Sample(uss, pss, monitors)


def operator_serving(kube: LocalKube) -> bool:
    """Whether the operator has started up as far as serving its metrics."""
    try:
        return kube.metric("ray_operator_clusters", phase="Running") is not None
    except OSError:
        return False


def peak_over(kube: LocalKube, seconds: float) -> Sample:
    """The largest tree seen, sampled every second for `seconds` (several autoscaler rounds)."""
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(operator_tree(kube))
        time.sleep(1)
    return max(samples, key=lambda sample: sample.uss)


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
    parser.add_argument("--steps", default="1,5,10", help="numbers of clusters to measure at, ascending")
    parser.add_argument("--window", type=float, default=15, help="seconds sampled at each step")
    parser.add_argument("--settle", type=float, default=30, help="seconds waited once every cluster is Running")
    parser.add_argument("--network", choices=["auto", "netns", "loopback"], default="auto", help="the pod runtime's")
    args = parser.parse_args()
    steps = [int(n) for n in args.steps.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as work, \
            running_stack(Path(work), network=network_kind(args.network)) as kube:
        wait_for(lambda: operator_serving(kube), timeout=60, message="the operator serving /metrics")
        base = peak_over(kube, args.window)
        print(f"operator tree with no cluster: USS {base.uss / MB:.1f} MB, PSS {base.pss / MB:.1f} MB", flush=True)
        print(f"{'clusters':>8} {'tree USS':>9} {'tree PSS':>9} {'extra USS/cluster':>18} {'extra PSS/cluster':>18} "
              f"{'monitor USS (mean)':>19} {'req/RC/min':>10}   (MB = 10^6 bytes; target ≤ {TARGET_MB} MB extra per "
              "cluster, ≤ 1 request per RayCluster per minute)", flush=True)
        names: list[str] = []
        for count in steps:
            while len(names) < count:
                names.append(f"bench-{len(names)}")
                kube.create(raycluster(names[-1]))
            started = time.monotonic()
            wait_for(lambda: all_running(kube, names, count), timeout=120 + 60 * count, interval=1,
                     message=f"{count} clusters Running, each with its autoscaler")
            to_running = time.monotonic() - started
            time.sleep(args.settle)
            requests, began = operator_requests(kube), time.monotonic()
            peak = peak_over(kube, args.window)
            per_minute = (operator_requests(kube) - requests) / count / ((time.monotonic() - began) / 60)
            extra_uss, extra_pss = (peak.uss - base.uss) / count / MB, (peak.pss - base.pss) / count / MB
            print(f"{count:>8} {peak.uss / MB:>8.1f}  {peak.pss / MB:>8.1f}  {extra_uss:>17.1f}  {extra_pss:>17.1f}  "
                  f"{statistics.mean(peak.monitors_uss) / MB:>18.1f}  {per_minute:>10.2f}   "
                  f"({to_running:.0f} s to Running)",
                  flush=True)
        kube.delete_every_raycluster()


if __name__ == "__main__":
    main()
