"""Benchmark: the work lost when workers go, with drain on and off (issue 24), in two scenarios.

Runs the local stack the operator tests use (the project's API server, the pod runtime with real Ray pods,
`ray-operator run` with a 2 s autoscaler round) and, for each drain setting, a RayCluster whose head holds no CPU.

`--scenario idle` (the default): one-CPU workers (minWorkers 0) go after `--idle` seconds idle. One job's driver
runs `--cycles` cycles: a burst of `--burst` one-CPU tasks (Ray's default 3 retries), and, once they are done, a
pause of about the idle timeout, so that the next burst lands as the workers go idle: some before the autoscaler's
decision, some just after (each cycle's offset is another step of `OFFSETS`). Printed per setting:

- tasks run, retried (attempts past the first, from Ray's task state) and failed (their retries spent);
- the idle workers removed (with drain on, each one's drain accepted) and the idle drains rejected (the worker had
  taken a task again and stayed), from the RayCluster's ScaledDown and DrainRejected Events; the worker pods deleted.

`--scenario replace`: `--workers` workers (minWorkers; maxWorkers `--max-workers`), each running a task of
`--task-seconds`, when the worker podType's template changes; `--replacements` times. Printed per setting: the
tasks run, retried and failed, the most worker pods there were at once (draining ones included), and the seconds
from the change until every worker has the new template (mean).

Drain off is `drainTimeoutSeconds: 0`, the behaviour before issue 24: Ray's v1 autoscaler de-registers the idle
node and its pod is deleted, whatever it took meanwhile; a changed template's workers are all deleted at once.

    python -m bench.drain                         (from the repository, after `pip install -e '.[test]'`)
    python -m bench.drain --cycles 20 --burst 2 --drain on,off
    python -m bench.drain --scenario replace --replacements 5 --workers 2 --max-workers 4
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.watching import EventWatch
from pod_runtime.network import network_kind
from ray_operator.helm_values import raycluster_from_values
from tests.harness.files import ROOT, load_yaml
from tests.harness.waiting import Sampler, wait_for
from tests.harness.local_kube import LocalKube, job_client, running_stack

NAMESPACE = "bench"
INTERVAL = 2  # the autoscaler's seconds between rounds
DRAIN_ON_SECONDS = 60
OFFSETS = (-1.0, 0.0, 1.0, 2.0, 3.0)  # seconds past the idle timeout the next burst lands: around the decision
DRIVER = """
import json, time, ray
from ray.util.state import list_tasks
ray.init()
@ray.remote(num_cpus=1)
def burst_task(seconds):
    time.sleep(seconds)
failed = 0
for cycle in range({cycles}):
    for ref in [burst_task.remote({seconds}) for _ in range({burst})]:
        try:
            ray.get(ref)
        except Exception:
            failed += 1
    if cycle + 1 < {cycles}:
        time.sleep(max(0.0, {idle} + {offsets}[cycle % len({offsets})]))
attempts = list_tasks(filters=[("func_or_class_name", "=", "burst_task")], limit=10000, raise_on_missing_output=False)
print("RESULT", json.dumps({{"run": {cycles} * {burst}, "failed": failed,
                            "retried": sum(1 for a in attempts if a.attempt_number > 0)}}), flush=True)
"""
# One task per worker (Ray's default 3 retries), each saying it started to an actor on the head (where the driver
# runs): once all run, the driver says so, and then what became of them.
REPLACE_DRIVER = """
import json, time, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from ray.util.state import list_tasks
ray.init()
@ray.remote(num_cpus=0)
class Board:
    def __init__(self): self.started = 0
    def start(self): self.started += 1
    def count(self): return self.started
@ray.remote(num_cpus=1)
def long_task(board, seconds):
    ray.get(board.start.remote())
    time.sleep(seconds)
here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
board = Board.options(scheduling_strategy=here).remote()
refs = [long_task.remote(board, {seconds}) for _ in range({tasks})]
while ray.get(board.count.remote()) < {tasks}:
    time.sleep(0.2)
print("ALL_RUNNING", flush=True)
failed = 0
for ref in refs:
    try:
        ray.get(ref)
    except Exception:
        failed += 1
attempts = list_tasks(filters=[("func_or_class_name", "=", "long_task")], limit=10000, raise_on_missing_output=False)
print("RESULT", json.dumps({{"run": {tasks}, "failed": failed,
                            "retried": sum(1 for a in attempts if a.attempt_number > 0)}}), flush=True)
"""


def raycluster(name: str, drain_seconds: int, workers: int, idle: float, min_workers: int = 0) -> dict[str, Any]:
    values = load_yaml(ROOT / "values/cpu-only.yaml")
    values["idleTimeoutMinutes"] = idle / 60
    values["podTypes"]["rayHeadType"].update(CPU=1, memory="512Mi", rayResources={"CPU": 0})  # tasks go to workers
    values["podTypes"]["rayWorkerType"].update(
        CPU=1, minWorkers=min_workers, maxWorkers=workers, memory="512Mi", drainTimeoutSeconds=drain_seconds
    )
    return raycluster_from_values(values, name, NAMESPACE)


def decisions(kube: LocalKube, name: str) -> tuple[int, int]:
    """Idle workers removed and idle drains rejected, from the RayCluster's Events (each counted as often as it
    was posted)."""
    removed = rejected = 0
    for event in kube.core.list_namespaced_event(NAMESPACE).items:
        if event.involved_object.name != name:
            continue
        message = event.message or ""
        found = re.match(r"(?:Removing|Drain rejected: kept) (\d+)", message)
        if found and event.reason == "ScaledDown" and "(idle)" in message:
            removed += int(found.group(1)) * (event.count or 1)
        elif found and event.reason == "DrainRejected":
            rejected += int(found.group(1)) * (event.count or 1)
    return removed, rejected


class WorkerPods(EventWatch):
    """A cluster's worker pods from one watch: those deleted, and the most there were at once (deleting included)."""

    def __init__(self, kube: LocalKube, name: str) -> None:
        self.existing: set[str] = set()
        self.deleted: set[str] = set()
        self.most = 0
        super().__init__(
            self._count,
            kube.core.list_namespaced_pod,
            NAMESPACE,
            label_selector=f"ray-cluster-name={name},ray-node-type=worker",
        )

    def _count(self, event: dict[str, Any]) -> None:
        pod = event["object"].metadata.name
        if event["type"] == "DELETED":
            self.existing.discard(pod)
            self.deleted.add(pod)
        else:
            self.existing.add(pod)
            self.most = max(self.most, len(self.existing))


def run_driver(kube: LocalKube, name: str, driver: str, timeout: float, started: Callable[[], None]) -> dict[str, int]:
    """Submit a driver to the cluster's head, call `started()` once it prints ALL_RUNNING (if it does), and return
    what it printed as its RESULT."""
    from ray.job_submission import JobStatus

    client = job_client(kube.head(name, NAMESPACE).status.pod_ip, kube.ray_token(name, NAMESPACE))
    job = client.submit_job(entrypoint=f"python -c '{driver}'", entrypoint_num_cpus=0)

    def logs() -> str:
        try:
            return str(client.get_job_logs(job))
        except OSError:
            return ""  # a request timed out (the dashboard was busy): asked again

    def ended() -> bool:
        try:
            return client.get_job_status(job) in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED)
        except OSError:
            return False

    if "ALL_RUNNING" in driver:
        wait_for(lambda: "ALL_RUNNING" in logs().splitlines(), timeout=timeout, interval=0.5, message=f"{name}'s tasks")
        started()
    wait_for(ended, timeout=timeout, interval=0.5, message=f"{name}'s driver", state=lambda: logs()[-2000:])
    result = re.search(r"^RESULT (.*)$", logs(), re.MULTILINE)
    if not result:
        raise RuntimeError(f"{name}: the driver printed no result:\n{logs()[-2000:]}")
    counted: dict[str, int] = json.loads(result.group(1))
    return counted


def delete_cluster(kube: LocalKube, name: str) -> None:
    kube.delete(name, NAMESPACE)
    wait_for(
        lambda: not kube.core.list_namespaced_pod(NAMESPACE, label_selector=f"ray-cluster-name={name}").items,
        timeout=DRAIN_ON_SECONDS + 60,
        message=f"{name}'s pods gone",
    )


def measure(kube: LocalKube, name: str, drain_seconds: int, args: argparse.Namespace) -> dict[str, int]:
    """One RayCluster through the cycles: what its driver and its Events counted, and its worker pods deleted."""
    pods = WorkerPods(kube, name)
    kube.create(raycluster(name, drain_seconds, args.burst, args.idle))
    kube.wait_phase(name, NAMESPACE, "Running", timeout=180)
    driver = DRIVER.format(
        cycles=args.cycles, burst=args.burst, seconds=args.task_seconds, idle=args.idle, offsets=OFFSETS
    )
    counted = run_driver(kube, name, driver, 120 + args.cycles * (args.idle + 60), lambda: None)
    counted["removed"], counted["rejected"] = decisions(kube, name)
    delete_cluster(kube, name)
    pods.stop()
    counted["deleted"] = len(pods.deleted)
    return counted


def replaced(kube: LocalKube, name: str, template: str, workers: int) -> bool:
    """Whether the cluster's workers are `workers` of the template `template`, none being deleted."""
    pods = kube.workers(name, NAMESPACE)
    return len(pods) == workers and all(
        p.metadata.labels.get("bench-template") == template and not p.metadata.deletion_timestamp for p in pods
    )


def change_template(kube: LocalKube, name: str, template: str, changed: list[float]) -> None:
    """Label the worker podType's template `template` (a new template: its workers are replaced); note when."""
    pod_types = kube.get(name, NAMESPACE)["spec"]["podTypes"]
    pod_types[1]["podConfig"]["metadata"]["labels"]["bench-template"] = template
    kube.patch(name, NAMESPACE, {"spec": {"podTypes": pod_types}})
    changed.append(time.monotonic())


def replaced_since(changed: list[float], done: Callable[[], bool]) -> tuple[float, bool]:
    """Now, and whether the workers are replaced (never before the change)."""
    return time.monotonic(), bool(changed) and done()


def measure_replace(kube: LocalKube, name: str, drain_seconds: int, args: argparse.Namespace) -> dict[str, float]:
    """One RayCluster through the replacements: its tasks run, retried and failed, the most worker pods at once, and
    the mean seconds from each template change until every worker had the new template."""
    pods = WorkerPods(kube, name)
    body = raycluster(name, drain_seconds, args.max_workers, args.idle, min_workers=args.workers)
    body["spec"]["podTypes"][1]["podConfig"].setdefault("metadata", {}).setdefault("labels", {})["bench-template"] = "0"
    kube.create(body)
    wait_for(
        lambda: replaced(kube, name, "0", args.workers) and kube.status(name, NAMESPACE).get("phase") == "Running",
        timeout=240,
        message=f"{name} running with {args.workers} workers",
    )
    totals = {"run": 0, "retried": 0, "failed": 0}
    seconds: list[float] = []
    for replacement in range(1, args.replacements + 1):
        template, changed = str(replacement), list[float]()
        driver = REPLACE_DRIVER.format(tasks=args.workers, seconds=args.task_seconds)
        done = functools.partial(replaced, kube, name, template, args.workers)
        samples = Sampler(functools.partial(replaced_since, changed, done), interval=0.5)
        change = functools.partial(change_template, kube, name, template, changed)
        for key, value in run_driver(kube, name, driver, 300 + args.task_seconds * 4, change).items():
            totals[key] += value
        wait_for(done, timeout=300 + args.task_seconds, interval=0.5, message=f"{name}'s workers of {template}")
        seconds.append(next(when for when, replaced_then in samples.stop() if replaced_then) - changed[0])
    delete_cluster(kube, name)
    pods.stop()
    return {**totals, "most": pods.most, "seconds": sum(seconds) / len(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=["idle", "replace"], default="idle", help="how the workers go")
    parser.add_argument("--cycles", type=int, default=20, help="idle: bursts, each landing as the workers go idle")
    parser.add_argument("--burst", type=int, default=2, help="idle: tasks per burst (and maxWorkers)")
    parser.add_argument("--idle", type=float, default=8.0, help="seconds a worker is idle before it goes")
    parser.add_argument("--replacements", type=int, default=3, help="replace: template changes")
    parser.add_argument("--workers", type=int, default=2, help="replace: minWorkers, each running a task")
    parser.add_argument("--max-workers", type=int, default=4, help="replace: maxWorkers")
    parser.add_argument("--task-seconds", type=float, help="how long each task runs (idle: 3, replace: 20)")
    parser.add_argument("--drain", default="on,off", help="the settings to run: on (60 s), off (0 s), or both")
    parser.add_argument("--network", choices=["auto", "netns", "loopback"], default="auto", help="the pod runtime's")
    args = parser.parse_args()
    settings = [s.strip() for s in args.drain.split(",")]
    if set(settings) - {"on", "off"}:
        parser.error(f"--drain: {args.drain!r} is not on, off or on,off")
    if args.task_seconds is None:
        args.task_seconds = 3.0 if args.scenario == "idle" else 20.0
    with (
        tempfile.TemporaryDirectory(prefix="bench-drain-") as work,
        running_stack(Path(work), network=network_kind(args.network)) as kube,
    ):
        kube.stop_operator()
        kube.start_operator("--autoscaler-interval", str(INTERVAL))
        kube.namespace(NAMESPACE)
        if args.scenario == "idle":
            print(
                f"{'drain':>8} {'cycles':>6} {'tasks':>5} {'retried':>7} {'failed':>6} {'removed':>7} "
                f"{'rejected':>8} {'deleted':>7}   (idle {args.idle:g} s, autoscaler round {INTERVAL} s, tasks of "
                f"{args.task_seconds:g} s)",
                flush=True,
            )
        else:
            print(
                f"{'drain':>8} {'replaced':>8} {'tasks':>5} {'retried':>7} {'failed':>6} {'most':>4} {'seconds':>7}"
                f"   ({args.workers} workers, maxWorkers {args.max_workers}, tasks of {args.task_seconds:g} s)",
                flush=True,
            )
        for setting in settings:
            seconds = DRAIN_ON_SECONDS if setting == "on" else 0
            name = f"drain-{setting}"
            if args.scenario == "idle":
                counted = measure(kube, name, seconds, args)
                print(
                    f"{f'{setting} {seconds}s':>8} {args.cycles:>6} {counted['run']:>5} {counted['retried']:>7} "
                    f"{counted['failed']:>6} {counted['removed']:>7} {counted['rejected']:>8} {counted['deleted']:>7}",
                    flush=True,
                )
            else:
                done = measure_replace(kube, name, seconds, args)
                print(
                    f"{f'{setting} {seconds}s':>8} {args.replacements:>8} {done['run']:>5g} {done['retried']:>7g} "
                    f"{done['failed']:>6g} {done['most']:>4g} {done['seconds']:>7.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
