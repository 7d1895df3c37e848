"""Benchmark: the work lost when the autoscaler removes idle workers under a bursty load, with drain on and off
(issue 24).

Runs the local stack the operator tests use (the project's API server, the pod runtime with real Ray pods,
`ray-operator run` with a 2 s autoscaler round) and, for each drain setting, a RayCluster whose head holds no CPU
and whose one-CPU workers (minWorkers 0) go after `--idle` seconds idle. One job's driver then runs `--cycles`
cycles: a burst of `--burst` one-CPU tasks (Ray's default 3 retries), and, once they are done, a pause of about
the idle timeout, so that the next burst lands as the workers go idle: some before the autoscaler's decision,
some just after (each cycle's offset is another step of `OFFSETS`). Printed per setting:

- tasks run, retried (attempts past the first, from Ray's task state) and failed (their retries spent);
- the idle workers removed (with drain on, each one's drain accepted) and the idle drains rejected (the worker had
  taken a task again and stayed), from the RayCluster's ScaledDown and DrainRejected Events; the worker pods deleted.

Drain off is `drainTimeoutSeconds: 0`, the behaviour before issue 24: Ray's v1 autoscaler de-registers the idle
node and its pod is deleted, whatever it took meanwhile.

    python -m bench.drain                         (from the repository, after `pip install -e '.[test]'`)
    python -m bench.drain --cycles 20 --burst 2 --drain on,off
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from bench.watching import EventWatch
from pod_runtime.network import network_kind
from ray_operator.helm_values import raycluster_from_values
from tests.harness.files import ROOT, load_yaml
from tests.harness.waiting import wait_for
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


def raycluster(name: str, drain_seconds: int, workers: int, idle: float) -> dict[str, Any]:
    values = load_yaml(ROOT / "values/cpu-only.yaml")
    values["idleTimeoutMinutes"] = idle / 60
    values["podTypes"]["rayHeadType"].update(CPU=1, memory="512Mi", rayResources={"CPU": 0})  # tasks go to workers
    values["podTypes"]["rayWorkerType"].update(
        CPU=1, minWorkers=0, maxWorkers=workers, memory="512Mi", drainTimeoutSeconds=drain_seconds
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


def measure(kube: LocalKube, name: str, drain_seconds: int, args: argparse.Namespace) -> dict[str, int]:
    """One RayCluster through the cycles: what its driver and its Events counted, and its worker pods deleted."""
    from ray.job_submission import JobStatus

    deleted: set[str] = set()
    pods = EventWatch(
        lambda event: deleted.add(event["object"].metadata.name) if event["type"] == "DELETED" else None,
        kube.core.list_namespaced_pod,
        NAMESPACE,
        label_selector=f"ray-cluster-name={name},ray-node-type=worker",
    )
    kube.create(raycluster(name, drain_seconds, args.burst, args.idle))
    kube.wait_phase(name, NAMESPACE, "Running", timeout=180)
    client = job_client(kube.head(name, NAMESPACE).status.pod_ip, kube.ray_token(name, NAMESPACE))
    driver = DRIVER.format(
        cycles=args.cycles, burst=args.burst, seconds=args.task_seconds, idle=args.idle, offsets=OFFSETS
    )
    job = client.submit_job(entrypoint=f"python -c '{driver}'", entrypoint_num_cpus=0)

    def ended() -> bool:
        try:
            return client.get_job_status(job) in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED)
        except OSError:
            return False  # a request timed out (the dashboard was busy): asked again

    wait_for(
        ended,
        timeout=120 + args.cycles * (args.idle + 60),
        interval=0.5,
        message=f"{name}'s driver",
        state=lambda: client.get_job_logs(job)[-2000:],
    )
    logs = client.get_job_logs(job)
    result = re.search(r"^RESULT (.*)$", logs, re.MULTILINE)
    if not result:
        raise RuntimeError(f"{name}: the driver printed no result:\n{logs[-2000:]}")
    counted: dict[str, int] = json.loads(result.group(1))
    counted["removed"], counted["rejected"] = decisions(kube, name)
    kube.delete(name, NAMESPACE)
    wait_for(
        lambda: not kube.core.list_namespaced_pod(NAMESPACE, label_selector=f"ray-cluster-name={name}").items,
        timeout=DRAIN_ON_SECONDS + 60,
        message=f"{name}'s pods gone",
    )
    pods.stop()
    counted["deleted"] = len(deleted)
    return counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=20, help="bursts, each landing as the workers go idle")
    parser.add_argument("--burst", type=int, default=2, help="tasks per burst (and maxWorkers)")
    parser.add_argument("--task-seconds", type=float, default=3.0, help="how long each task runs")
    parser.add_argument("--idle", type=float, default=8.0, help="seconds a worker is idle before it goes")
    parser.add_argument("--drain", default="on,off", help="the settings to run: on (60 s), off (0 s), or both")
    parser.add_argument("--network", choices=["auto", "netns", "loopback"], default="auto", help="the pod runtime's")
    args = parser.parse_args()
    settings = [s.strip() for s in args.drain.split(",")]
    if set(settings) - {"on", "off"}:
        parser.error(f"--drain: {args.drain!r} is not on, off or on,off")
    with (
        tempfile.TemporaryDirectory(prefix="bench-drain-") as work,
        running_stack(Path(work), network=network_kind(args.network)) as kube,
    ):
        kube.stop_operator()
        kube.start_operator("--autoscaler-interval", str(INTERVAL))
        kube.namespace(NAMESPACE)
        print(
            f"{'drain':>8} {'cycles':>6} {'tasks':>5} {'retried':>7} {'failed':>6} {'removed':>7} {'rejected':>8} "
            f"{'deleted':>7}   (idle {args.idle:g} s, autoscaler round {INTERVAL} s, tasks of "
            f"{args.task_seconds:g} s)",
            flush=True,
        )
        for setting in settings:
            seconds = DRAIN_ON_SECONDS if setting == "on" else 0
            counted = measure(kube, f"drain-{setting}", seconds, args)
            print(
                f"{f'{setting} {seconds}s':>8} {args.cycles:>6} {counted['run']:>5} {counted['retried']:>7} "
                f"{counted['failed']:>6} {counted['removed']:>7} {counted['rejected']:>8} {counted['deleted']:>7}",
                flush=True,
            )


if __name__ == "__main__":
    main()
