"""No work lost when a worker pod goes: real Ray on the real control plane, a task running on the worker that is
deleted (by kubectl, or by its autoscaler replacing a changed podType's workers) completes, with no retry, and work
submitted meanwhile lands on another node."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.harness.waiting import Sampler, wait_for
from tests.harness.local_kube import LocalKube, job_client, stack_fixtures
from tests.harness.rayclusters import raycluster
from tests.harness.tools import kubectl

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the pod runtime needs root for network namespaces")

kube, no_cluster_left = stack_fixtures("drain")

# The job: a long task (never retried) reports where it runs; once that node is draining, a short task is submitted,
# and both results are printed.
JOB = """
import time, ray
ray.init()
@ray.remote(num_cpus=0)
class Board:
    def __init__(self): self.node = None
    def started(self, node): self.node = node
    def where(self): return self.node
@ray.remote(num_cpus=1, max_retries=0)
def long_task(board, seconds):
    board.started.remote(ray.get_runtime_context().get_node_id())
    time.sleep(seconds)
    return ray.get_runtime_context().get_node_id()
@ray.remote(num_cpus=1, max_retries=0)
def short_task():
    return ray.get_runtime_context().get_node_id()
board = Board.remote()
running = long_task.remote(board, SECONDS)
deadline = time.time() + 120
while ray.get(board.where.remote()) is None and time.time() < deadline:
    time.sleep(0.2)
node = ray.get(board.where.remote())
ip = next(n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node)
print("LONG_TASK_ON", ip, flush=True)
gcs = ray._private.worker.global_worker.gcs_client
def draining():
    if hasattr(gcs, "get_draining_nodes"):
        return node in {key.hex() if isinstance(key, bytes) else key for key in gcs.get_draining_nodes()}
    # Ray 2.52: the node state the GCS reports (NodeSnapshot.DRAINING)
    return any(n.hex() == node and i.state_snapshot.state == 3 for n, i in gcs.get_all_node_info().items())
while not draining():
    assert time.time() < deadline, "the node was never drained"
    time.sleep(0.2)
print("DRAINING", flush=True)
print("SHORT_TASK_ELSEWHERE", ray.get(short_task.remote()) != node, flush=True)
print("LONG_TASK_DONE", ray.get(running) == node, flush=True)
"""

# The job: TASKS tasks (never retried) hold the workers; once all run (counted by an actor on the head, where the
# driver runs) it says so, then how many completed.
BUSY = """
import time, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init()
@ray.remote(num_cpus=0)
class Board:
    def __init__(self): self.started = 0
    def start(self): self.started += 1
    def count(self): return self.started
@ray.remote(num_cpus=1, max_retries=0)
def busy(board, seconds):
    ray.get(board.start.remote())
    time.sleep(seconds)
    return 1
here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
board = Board.options(scheduling_strategy=here).remote()
done = [busy.remote(board, SECONDS) for _ in range(TASKS)]
while ray.get(board.count.remote()) < TASKS:
    time.sleep(0.2)
print("ALL_RUNNING", flush=True)
print("COMPLETED", sum(ray.get(done)), flush=True)
"""


def drain_cluster(name: str, drain_seconds: int) -> dict:
    """Two workers, a head that runs no tasks (CPU 0), idle workers kept for minutes."""
    rc = raycluster(name, min_workers=2, max_workers=4, idle_minutes=5)
    head, worker = rc["spec"]["podTypes"]
    head["rayResources"] = {"CPU": 0}
    worker["drainTimeoutSeconds"] = drain_seconds
    return rc


def running_cluster(
    kube: LocalKube, name: str, drain_seconds: int, image: str | None = None, authentication: str = "token"
) -> None:
    """drain_cluster() created (its pods of `image`, if given; its `rayAuthentication`), once Running with its 2
    workers."""
    rc = drain_cluster(name, drain_seconds)
    rc["spec"]["rayAuthentication"] = authentication
    for pod_type in rc["spec"]["podTypes"] if image else ():
        pod_type["podConfig"]["spec"]["containers"][0]["image"] = image
    kube.create(rc)
    wait_for(
        lambda: (
            kube.status(name, "ray").get("phase") == "Running"
            and len([p for p in kube.workers(name, "ray") if p.status.phase == "Running"]) == 2
        ),
        timeout=240,
        message="Running with 2 workers",
        state=lambda: kube.describe("ray"),
    )


def delete_pod(kube: LocalKube, pod: str) -> None:
    """`kubectl delete pod`, as a user does it, without waiting for the pod to go."""
    subprocess.run(
        [str(kubectl()), "--kubeconfig", str(kube.kubeconfig), "-n", "ray", "delete", "pod", pod, "--wait=false"],
        check=True,
        timeout=60,
    )


def start_job(kube: LocalKube, name: str, seconds: int, script: str = JOB, tasks: int = 1) -> tuple[object, str]:
    client = job_client(kube.head(name, "ray").status.pod_ip, kube.ray_token(name, "ray"))
    script = script.replace("SECONDS", str(seconds)).replace("TASKS", str(tasks))
    job = client.submit_job(entrypoint=f"python -c '{script}'", entrypoint_num_cpus=0)
    return client, job


def all_running(client, job: str) -> None:
    wait_for(
        lambda: "ALL_RUNNING" in client.get_job_logs(job).splitlines(),  # the log also holds the script
        timeout=180,
        message="every task running",
        state=lambda: client.get_job_logs(job)[-2000:],
    )


def draining_events(kube: LocalKube, name: str) -> set[str]:
    """The pods the cluster's Draining Events name."""
    return {
        e.message.split()[2]
        for e in kube.core.list_namespaced_event("ray", field_selector="reason=Draining").items
        if e.involved_object.name == name
    }


def long_task_pod(kube: LocalKube, client, job: str, name: str) -> str:
    """The worker pod the long task runs on, once the job says so."""
    found = wait_for(
        lambda: re.search(r"LONG_TASK_ON (\S+)", client.get_job_logs(job)),
        timeout=180,
        message="the long task running",
        state=lambda: client.get_job_logs(job)[-2000:],
    )
    ip = found.group(1)
    return next(p.metadata.name for p in kube.workers(name, "ray") if p.status.pod_ip == ip)


def finished(client, job: str) -> list[str]:
    """The lines of a job that succeeded (its log begins with its script: a marker counts as a whole line)."""
    from ray.job_submission import JobStatus

    wait_for(
        lambda: client.get_job_status(job) in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED),
        timeout=240,
        message="the job's end",
        state=lambda: client.get_job_logs(job)[-2000:],
    )
    lines = client.get_job_logs(job).splitlines()
    said = [line for line in lines if "[state-dump]" not in line and "(raylet)" not in line]
    assert client.get_job_status(job) == JobStatus.SUCCEEDED, "\n".join(said[-40:])  # the driver's, not Ray's dumps
    return lines


def test_a_worker_deleted_by_kubectl_finishes_its_task_and_new_work_lands_elsewhere(kube):
    running_cluster(kube, "drain-delete", drain_seconds=45)
    client, job = start_job(kube, "drain-delete", seconds=20)
    pod = long_task_pod(kube, client, job, "drain-delete")
    assert kube.core.read_namespaced_pod(pod, "ray").spec.termination_grace_period_seconds == 60
    delete_pod(kube, pod)
    wait_for(
        lambda: kube.status("drain-delete", "ray").get("drainingWorkers") == 1,
        timeout=30,
        message="status: one worker draining",
    )
    wait_for(
        lambda: [
            e
            for e in kube.core.list_namespaced_event("ray", field_selector="reason=Draining").items
            if pod in e.message and "at most 45s" in e.message
        ],
        timeout=30,
        message="the Draining Event",
    )
    printed = finished(client, job)
    assert "SHORT_TASK_ELSEWHERE True" in printed and "LONG_TASK_DONE True" in printed
    wait_for(
        lambda: pod not in {p.metadata.name for p in kube.core.list_namespaced_pod("ray").items},
        timeout=60,
        message="the drained pod gone",
    )


def raylet_started(pod_ip: str | None) -> bool:
    """Whether a raylet runs for a pod's IP (the pod runtime's processes are this host's)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if pod_ip and args[0].endswith(b"raylet") and f"--node_ip_address={pod_ip}".encode() in args:
            return True
    return False


def test_a_worker_deleted_while_ray_starts_drains_its_node_once_it_joins(kube):
    """Deleted as soon as its raylet runs (before it has joined, unless the machine is quick), a worker waits for its
    Ray node to join, drains it (it takes no work) and goes once its raylet exits, long before its 120 s deadline."""
    kube.create(drain_cluster("drain-early", drain_seconds=120))
    pod = wait_for(
        lambda: next(
            (p.metadata.name for p in kube.workers("drain-early", "ray") if raylet_started(p.status.pod_ip)), None
        ),
        timeout=240,
        message="a worker's raylet running",
        state=lambda: kube.describe("ray"),
    )
    delete_pod(kube, pod)
    drained_and_gone(kube, pod)


def drained_and_gone(kube: LocalKube, pod: str) -> None:
    """A deleted worker gone within 60 s, its container having drained its Ray node until its work was done."""
    wait_for(
        lambda: pod not in {p.metadata.name for p in kube.core.list_namespaced_pod("ray").items},
        timeout=60,
        message="the deleted worker gone",
        state=lambda: kube.container_log("ray", pod)[-2000:],
    )
    said = kube.container_log("ray", pod).splitlines()
    assert [line for line in said if line.startswith("draining Ray node ")], said[-20:]
    assert "drained: the node's work is done" in said, said[-20:]


def test_a_changed_podtypes_new_workers_run_before_the_old_ones_drain_and_their_tasks_complete(kube):
    """maxWorkers 4 leaves room for the two new-template workers: they run before an old one goes, and the podType
    never has more than 4 pods (draining ones included)."""
    running_cluster(kube, "drain-change", drain_seconds=90)
    old = {p.metadata.name for p in kube.workers("drain-change", "ray")}
    client, job = start_job(kube, "drain-change", seconds=60)
    long_task_pod(kube, client, job, "drain-change")
    workers = Sampler(
        lambda: [
            (p.metadata.name in old, bool(p.metadata.deletion_timestamp), p.status.phase == "Running")
            for p in kube.workers("drain-change", "ray")
        ]
    )
    pod_types = kube.get("drain-change", "ray")["spec"]["podTypes"]
    pod_types[1]["podConfig"].setdefault("metadata", {}).setdefault("labels", {})["template"] = "v2"
    kube.patch("drain-change", "ray", {"spec": {"podTypes": pod_types}})
    printed = finished(client, job)
    assert "SHORT_TASK_ELSEWHERE True" in printed and "LONG_TASK_DONE True" in printed
    for sample in workers.stop():
        assert len(sample) <= 4, sample
        released = len(old) - sum(was_old and not deleting for was_old, deleting, _ in sample)
        assert released <= sum(not was_old and running for was_old, _, running in sample), sample
    wait_for(
        lambda: (
            lambda workers: (
                len(workers) == 2
                and not {p.metadata.name for p in workers} & old
                and all(p.metadata.labels.get("template") == "v2" for p in workers)
            )
        )(kube.workers("drain-change", "ray")),
        timeout=180,
        message="every worker of the new template",
        state=lambda: kube.describe("ray"),
    )


def test_a_drain_that_reaches_its_deadline_says_what_still_ran(kube):
    """A 5 s drain of a worker running a 120 s task: Ray stops at the deadline, and the Warning Event names the task."""
    running_cluster(kube, "drain-late", drain_seconds=5)
    client, job = start_job(kube, "drain-late", seconds=120)
    pod = long_task_pod(kube, client, job, "drain-late")
    assert kube.core.read_namespaced_pod(pod, "ray").spec.termination_grace_period_seconds == 20
    delete_pod(kube, pod)
    event = wait_for(
        lambda: next(
            (
                e
                for e in kube.core.list_namespaced_event("ray", field_selector="reason=DrainDeadlineExceeded").items
                if pod in e.message
            ),
            None,
        ),
        timeout=60,
        message="the DrainDeadlineExceeded Event",
        state=lambda: kube.describe("ray"),
    )
    assert event.type == "Warning" and "still running: ray::long_task" in event.message, event.message
    client.stop_job(job)


def test_lowering_max_workers_drains_the_surplus_worker_and_its_task_completes(kube):
    running_cluster(kube, "drain-fewer", drain_seconds=60)
    client, job = start_job(kube, "drain-fewer", seconds=30, script=BUSY, tasks=2)
    all_running(client, job)
    pod_types = kube.get("drain-fewer", "ray")["spec"]["podTypes"]
    pod_types[1].update(minWorkers=1, maxWorkers=1)
    kube.patch("drain-fewer", "ray", {"spec": {"podTypes": pod_types}})
    wait_for(
        lambda: len(draining_events(kube, "drain-fewer")) == 1,
        timeout=60,
        message="one worker draining",
        state=lambda: kube.describe("ray"),
    )
    assert "COMPLETED 2" in finished(client, job)
    wait_for(
        lambda: (
            len(kube.workers("drain-fewer", "ray")) == 1
            and not kube.core.list_namespaced_pod(
                "ray", label_selector="ray-cluster-name=drain-fewer,ray-node-type=worker"
            ).items[1:]
        ),
        timeout=90,
        message="one worker left",
        state=lambda: kube.describe("ray"),
    )


def test_removing_a_podtype_drains_its_workers_and_their_tasks_complete(kube):
    running_cluster(kube, "drain-gone", drain_seconds=60)
    old = {p.metadata.name for p in kube.workers("drain-gone", "ray")}
    client, job = start_job(kube, "drain-gone", seconds=30, script=BUSY, tasks=2)
    all_running(client, job)
    head, worker = kube.get("drain-gone", "ray")["spec"]["podTypes"]
    kube.patch("drain-gone", "ray", {"spec": {"podTypes": [head, {**worker, "name": "newWorkerType"}]}})
    wait_for(
        lambda: draining_events(kube, "drain-gone") == old,
        timeout=60,
        message="both old workers draining",
        state=lambda: kube.describe("ray"),
    )
    assert "COMPLETED 2" in finished(client, job)
    wait_for(
        lambda: (
            lambda workers: (
                len(workers) == 2
                and not {p.metadata.name for p in workers} & old
                and all(p.metadata.labels["ray-user-node-type"] == "newWorkerType" for p in workers)
            )
        )(kube.workers("drain-gone", "ray")),
        timeout=180,
        message="two workers of the new podType",
        state=lambda: kube.describe("ray"),
    )
