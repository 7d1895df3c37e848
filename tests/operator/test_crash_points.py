"""Crash points (issue 25), after Sieve: the operator SIGKILLed right after the k-th API write of each of its main
paths, and a fresh operator converging after every crash.

One RayCluster goes through six paths (create; delete; scale down; scale up; a worker podType's template change;
head loss), each run once for every k up to CRASH_POINT_LIMIT with its operator crashing right after its k-th write
(counted by autoscaler_bridge.crash_point from the moment the path starts; paths that undo each other alternate).
After a crash a fresh operator starts, which must converge to what the path asked for — one head, the wanted
workers of the wanted template, the token Secret, head Service and budget there (or, after a delete, nothing of the
cluster left), `autoscalerRetries` counting head losses only — with no storm of Events, and no moment with two
heads; it is then the next path's operator. A path ends when it has converged and its operator's writes have stopped
for a second (some come after convergence shows); one with fewer writes than k runs to its end (checked the same
way), and its count of writes is printed.

    CRASH_POINT_LIMIT=11 (the default, CI: 54 crash points, the paths of fewer writes running to their end) … a larger
    number for the long table
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from autoscaler_bridge import crash_point
from control_plane.processes import stop
from tests.harness.waiting import Sampler, wait_for
from tests.harness.local_kube import LocalKube, stack_fixtures
from tests.harness.rayclusters import head_budget, raycluster

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the pod runtime needs root for network namespaces")

kube, no_cluster_left = stack_fixtures("crash-points")

NAME = NAMESPACE = "crash"
LIMIT = int(os.environ.get("CRASH_POINT_LIMIT", "11"))  # crash points per path: its first writes
EVENTS_PER_PATH = 30  # Events (counting repeats) a path and its recovery may post: more is a storm
CONVERGE_SECONDS = 180


@dataclass(frozen=True)
class Want:
    """What the cluster must look like once an operator has converged."""

    exists: bool = False
    workers: int = 0
    memory: str = "512Mi"  # the worker podType's memory limit: which template the workers must have
    retries: int = 0


def memory_of(pod: Any) -> str:
    return pod.spec.containers[0].resources.limits["memory"]


def missing(kube: LocalKube, want: Want) -> str | None:
    """How the cluster differs from `want`, None once it matches."""
    pods = kube.pods(NAMESPACE, f"ray-cluster-name={NAME}")
    if not want.exists:
        left = [p.metadata.name for p in pods]
        if kube.core.list_namespaced_service(NAMESPACE, field_selector=f"metadata.name={NAME}-ray-head").items:
            left.append("head Service")
        if kube.ray_token(NAME, NAMESPACE) is not None:
            left.append("token Secret")
        if head_budget(kube, NAME, NAMESPACE) is not None:
            left.append("head budget")
        return f"left behind: {left}" if left else None
    status = kube.status(NAME, NAMESPACE)
    heads = [p for p in pods if p.metadata.labels.get("ray-node-type") == "head"]
    workers = [p for p in pods if p.metadata.labels.get("ray-node-type") == "worker"]
    wrong = [p.metadata.name for p in workers if memory_of(p) != want.memory]
    if status.get("phase") != "Running" or status.get("autoscalerRetries", 0) != want.retries:
        return f"phase {status.get('phase')}, autoscalerRetries {status.get('autoscalerRetries')} (want {want.retries})"
    if len(heads) != 1 or len(workers) != want.workers or wrong:
        return f"{len(heads)} heads, {len(workers)} workers (want {want.workers}), of an old template: {wrong}"
    if kube.ray_token(NAME, NAMESPACE) is None or head_budget(kube, NAME, NAMESPACE) is None:
        return "no token Secret or no head budget"
    return None


def events_posted(kube: LocalKube) -> int:
    """The Events about the cluster so far, each counted as often as it was posted."""
    listed = kube.core.list_namespaced_event(NAMESPACE, field_selector=f"involvedObject.name={NAME}").items
    return sum(event.count or 1 for event in listed)


def head_count(kube: LocalKube) -> Sampler[int]:
    """The heads (not being deleted) the cluster has, sampled in the background."""
    return Sampler(lambda: len(kube.pods(NAMESPACE, f"ray-cluster-name={NAME},ray-node-type=head")))


def set_spec(kube: LocalKube, change: Callable[[dict[str, Any]], None]) -> None:
    spec = kube.get(NAME, NAMESPACE)["spec"]
    change(spec)
    kube.patch(NAME, NAMESPACE, {"spec": spec})


def create(kube: LocalKube, want: Want) -> Want:
    kube.create(raycluster(NAME, NAMESPACE, min_workers=1))
    return Want(exists=True, workers=1)


def scale_down(kube: LocalKube, want: Want) -> Want:
    set_spec(kube, lambda spec: spec["podTypes"][1].update(minWorkers=0))
    return replace(want, workers=0)  # idle for 0.1 minutes: removed


def scale_up(kube: LocalKube, want: Want) -> Want:
    set_spec(kube, lambda spec: spec["podTypes"][1].update(minWorkers=1))
    return replace(want, workers=1)


def change_template(kube: LocalKube, want: Want) -> Want:
    memory = "600Mi" if want.memory == "512Mi" else "512Mi"
    set_spec(
        kube,
        lambda spec: spec["podTypes"][1]["podConfig"]["spec"]["containers"][0]["resources"]["limits"].update(
            memory=memory
        ),
    )
    return replace(want, memory=memory)


def lose_head(kube: LocalKube, want: Want) -> Want:
    kube.core.delete_namespaced_pod(kube.head(NAME, NAMESPACE).metadata.name, NAMESPACE)
    return replace(want, retries=want.retries + 1)


def delete(kube: LocalKube, want: Want) -> Want:
    kube.delete(NAME, NAMESPACE)
    return Want()


# Groups of paths that undo each other, each with the path (not crashed) that makes the state it starts from.
GROUPS = (
    ((create, delete), None),
    ((scale_down, scale_up), create),
    ((change_template,), None),
    ((lose_head,), None),
)


class Operators:
    """The operators of the table, one after another, each keeping its own ledger of writes."""

    def __init__(self, kube: LocalKube, work: Path) -> None:
        self.kube, self.work = kube, work
        self.process: subprocess.Popen | None = None
        self.ledger = work / "ledger-0"

    def start(self) -> None:
        self.ledger = self.work / f"ledger-{len(self.kube.operators)}"
        # One identity, as a crashed operator container restarted in its pod keeps (its pod's name, PID 1): the
        # clusters stay its own, with no wait for its Lease to lapse.
        self.process = self.kube.start_operator(
            "--identity", "crash-points", env={crash_point.LEDGER_ENV: str(self.ledger)}
        )

    def writes(self) -> int:
        return len(self.ledger.read_text().splitlines()) if self.ledger.exists() else 0

    def settled(self) -> int:
        """The operator's writes once they have stopped for a second (its start-up writes done)."""
        seen: list[int] = []

        def still() -> bool:
            seen.append(self.writes())
            return len(seen) > 5 and seen[-1] == seen[-6]

        wait_for(still, timeout=60, interval=0.2, message="the operator's writes to stop")
        return seen[-1]

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        stop(self.process, signal.SIGKILL)


def converge(kube: LocalKube, want: Want, after: str) -> None:
    wait_for(
        lambda: missing(kube, want) is None,
        timeout=CONVERGE_SECONDS,
        interval=0.5,
        message=f"convergence after {after}",
        state=lambda: f"{missing(kube, want)}; {kube.describe(NAMESPACE)}",
    )


def crash_or_end(kube: LocalKube, operators: Operators, want: Want, path: str) -> bool:
    """Wait for the armed operator's death or the path's end; whether it crashed."""
    wait_for(
        lambda: not operators.alive() or missing(kube, want) is None,
        timeout=CONVERGE_SECONDS,
        interval=0.2,
        message=f"{path}: the crash point, or the path's end",
        state=lambda: f"{missing(kube, want)}; {kube.describe(NAMESPACE)}",
    )
    return not operators.alive()


def test_the_operator_converges_after_a_crash_at_every_write_of_its_main_paths(kube, tmp_path):
    kube.stop_operator()
    kube.namespace(NAMESPACE)
    operators = Operators(kube, tmp_path)
    state = {"want": Want()}
    crashed: list[str] = []
    writes: dict[str, int] = {}  # a path's writes, once it ran to its end unharmed
    problems: list[str] = []

    def run(path: Callable[[LocalKube, Want], Want], k: int) -> None:
        """The path, its operator crashing after its k-th write (0: none), then the checks of convergence."""
        point = f"{path.__name__}@{k}"
        base = operators.settled()
        crash_point.crash_at(operators.ledger, base + k if k else 0)
        events, heads = events_posted(kube), head_count(kube)
        state["want"] = want = path(kube, state["want"])
        ended = not crash_or_end(kube, operators, want, point)
        if ended and k:
            operators.settled()  # the path's last writes may come after its end shows: the k-th may be one of them
            if operators.alive():
                writes[path.__name__] = operators.writes() - base
                # Disarmed: a write of steady state (a status refresh) past the quiet second is no write of the
                # path, and would kill the next path's operator before that path is armed.
                crash_point.crash_at(operators.ledger, 0)
        if not operators.alive():
            code = operators.process.returncode if operators.process else None
            if k and code == -signal.SIGKILL:
                crashed.append(point)
            else:  # an operator that was not to crash there ended
                problems.append(f"{point}: the operator exited with {code}: {kube.operator_lines()[-3:]}")
            operators.start()
        converge(kube, want, point)
        most = max(heads.stop())
        if most > 1:
            problems.append(f"{point}: {most} heads at once")
        if events_posted(kube) - events > EVENTS_PER_PATH:
            problems.append(f"{point}: {events_posted(kube) - events} Events")

    operators.start()
    try:
        for group, before in GROUPS:
            if before:
                run(before, 0)
            for k in range(1, LIMIT + 1):
                if all(path.__name__ in writes for path in group):
                    break  # every path of the group ran to its end with fewer writes than k
                for path in group:
                    run(path, 0 if path.__name__ in writes else k)
    finally:
        print(f"crash points: {len(crashed)} ({', '.join(crashed)}); writes of paths run to their end: {writes}")
        operators.kill()
    assert not problems
    assert len(crashed) >= min(50, LIMIT * 5)
