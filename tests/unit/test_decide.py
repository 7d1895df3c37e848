"""The next step for a RayCluster, decided from observations made by hand: no Ray, no API server, no root."""

from __future__ import annotations

from dataclasses import replace

import pytest

from autoscaler_bridge.names import DRAIN_ANNOTATION
from ray_operator.decide import Action, Step, decide, deleted_with, failure_reason, recheck_seconds
from ray_operator.monitor_process import EXIT_FENCED, EXIT_NO_TOKEN_AUTH, EXIT_UNSUPPORTED_RAY
from ray_operator.observation import Memory, MonitorState, Observation
from ray_operator.settings import Settings

SETTINGS = Settings(stall_rounds=3, autoscaler_interval_seconds=5, monitor_memory_limit_mb=100)
CONFIG = {"available_node_types": {"head": {"resources": {"CPU": 1}}, "worker": {"resources": {"CPU": 2}}}}


def pod(name: str, kind: str = "head", phase: str = "Running", ip: str = "10.0.0.2", **status: object) -> dict:
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "labels": {"ray-node-type": kind, "ray-user-node-type": kind}},
        "status": {"phase": phase, **({"podIP": ip} if ip else {}), **status},
    }


HEALTHY = MonitorState(running_seconds=60, silent_seconds=1, made_a_round=True, round_since_config=True)
RUNNING = Observation(
    1,
    config=CONFIG,
    service_exists=True,
    head=pod("h"),
    gcs_address="10.0.0.2:6379",
    gcs_answers=True,
    monitor=HEALTHY,
    memory=Memory(phase="Running", head_uid="uid-h"),
)
STOPPED_HEAD = pod(
    "h",
    phase="Failed",
    containerStatuses=[
        {"name": "ray-node", "state": {"terminated": {"exitCode": 127, "message": "bash: ray: command not found\n"}}}
    ],
)


STARVED = (  # the status message of an autoscaler starved of CPU (late by 20 s, of which it waited 5 s for a CPU)
    "the autoscaler's last round was 20s ago (it waited 5s of them for a CPU): starved of CPU, not hung; restarted "
    "only past 45s"
)
OTHER = {"identity": "op-b", "lease": "ray-system/ray-operator-op-b"}


@pytest.mark.parametrize(
    "observation, action, message",
    [
        # Whose the cluster is comes first: nothing else is looked at for a cluster this operator may not run.
        (
            replace(RUNNING, ownership="fenced", problems=("bad",)),
            Action.FENCED,
            "this operator's Lease is not renewed: it runs no autoscaler until it is",
        ),
        (
            replace(RUNNING, ownership="elsewhere", owner=OTHER, problems=("bad",)),
            Action.NOT_OURS,
            "run by the operator op-b (Lease ray-system/ray-operator-op-b)",
        ),
        (replace(RUNNING, ownership="unowned"), Action.CLAIM, "taking the cluster over"),
        (
            replace(RUNNING, ownership="orphaned", owner=OTHER),
            Action.CLAIM,
            "taking the cluster over from op-b, whose Lease ran out",
        ),
        (replace(RUNNING, ownership="for a peer", successor="op-c"), Action.NOT_OURS, "for the operator op-c to take"),
        (
            replace(RUNNING, ownership="hand over", successor="op-c"),
            Action.HAND_OVER,
            "handing the cluster to the operator op-c, chosen for it now",
        ),
        (
            replace(RUNNING, problems=("podTypes[0].name: required", "headPodType: no such podType")),
            Action.INVALID_SPEC,
            "invalid RayCluster: podTypes[0].name: required; headPodType: no such podType",
        ),
        (
            replace(RUNNING, memory=Memory(unsupported="the cluster runs Ray 2.40.0")),
            Action.HOLD,
            "the cluster runs Ray 2.40.0",
        ),
        (
            replace(RUNNING, head_outdated=True),
            Action.RESTART_CLUSTER,
            "restarting the cluster for the head podType's new pod template",
        ),
        (
            replace(RUNNING, head=STOPPED_HEAD),
            Action.HEAD_FAILED,
            "the head pod h is Failed: container ray-node exited with code 127: bash: ray: command not found",
        ),
        (replace(RUNNING, head=None), Action.HEAD_GONE, "the head pod is gone"),
        (replace(RUNNING, head=None, memory=Memory(phase="Running")), Action.HEAD_GONE, "the head pod is gone"),
        (
            replace(RUNNING, head=None, memory=Memory(phase="AutoscalingExceptionRecovery", backoff_seconds=3.4)),
            Action.WAIT_HEAD_BACKOFF,
            "creating a new head pod in 3s",
        ),
        (replace(RUNNING, head=None, memory=Memory()), Action.CREATE_HEAD, "creating the head pod"),
        (
            replace(RUNNING, head=None, memory=Memory(), pods_starting=SETTINGS.head_places - 1),
            Action.CREATE_HEAD,
            "creating the head pod",
        ),
        (
            replace(RUNNING, head=None, memory=Memory(), pods_starting=SETTINGS.head_places),
            Action.WAIT_HEAD_SLOT,
            "creating the head pod once fewer than 2 Ray pods are starting on each node (2 are on the busiest, "
            "counting those not placed yet; 1 more place is kept for workers)",
        ),
        (
            replace(RUNNING, head=pod("h", phase="Pending", ip="")),
            Action.WAIT_HEAD,
            "waiting for the head pod h to run",
        ),
        (replace(RUNNING, head=pod("h", ip="")), Action.WAIT_HEAD, "waiting for the head pod h to run"),
        (replace(RUNNING, gcs_answers=False), Action.WAIT_GCS, "waiting for Ray on the head pod (GCS 10.0.0.2:6379)"),
        (
            replace(RUNNING, monitor=None, memory=Memory(head_uid="uid-h", backoff_seconds=8)),
            Action.WAIT_AUTOSCALER_BACKOFF,
            "restarting the autoscaler in 8s",
        ),
        (replace(RUNNING, monitor=None), Action.START_AUTOSCALER, "starting the autoscaler"),
        (
            replace(
                RUNNING, monitor=replace(HEALTHY, exit_code=EXIT_UNSUPPORTED_RAY, error="the cluster runs Ray 2.40.0")
            ),
            Action.UNSUPPORTED_RAY,
            "the cluster runs Ray 2.40.0",
        ),
        (
            replace(RUNNING, monitor=replace(HEALTHY, exit_code=EXIT_NO_TOKEN_AUTH, error="Ray 2.51.0 has no tokens")),
            Action.NO_TOKEN_AUTH,
            "Ray 2.51.0 has no tokens",
        ),
        (
            replace(RUNNING, monitor=replace(HEALTHY, exit_code=1, error="AuthenticationError: InvalidAuthToken")),
            Action.AUTOSCALER_FAILED,
            "the autoscaler exited with code 1: AuthenticationError: InvalidAuthToken",
        ),
        (
            replace(RUNNING, monitor=replace(HEALTHY, exit_code=EXIT_FENCED)),
            Action.START_AUTOSCALER,
            "restarting the autoscaler, stopped while this operator's Lease lapsed",
        ),  # not a failure: not counted
        (
            replace(RUNNING, monitor=replace(HEALTHY, exit_code=-9)),
            Action.AUTOSCALER_FAILED,
            "the autoscaler exited with code -9",
        ),
        (
            replace(RUNNING, monitor=replace(HEALTHY, silent_seconds=16)),
            Action.AUTOSCALER_FAILED,
            "the autoscaler made no progress for 16s",
        ),
        (  # late, and it waited less than a tenth of the time for a CPU: hung
            replace(RUNNING, monitor=replace(HEALTHY, silent_seconds=20, starved_seconds=1.9)),
            Action.AUTOSCALER_FAILED,
            "the autoscaler made no progress for 20s",
        ),
        (  # late, but it waited for a CPU: starved, so it is given three stall bounds
            replace(RUNNING, monitor=replace(HEALTHY, silent_seconds=20, starved_seconds=5)),
            Action.AUTOSCALER_STARVED,
            STARVED,
        ),
        (
            replace(RUNNING, monitor=replace(HEALTHY, silent_seconds=46, starved_seconds=20)),
            Action.AUTOSCALER_FAILED,
            "the autoscaler made no progress for 46s (it waited 20s of them for a CPU): starved too long",
        ),
        (
            replace(RUNNING, monitor=replace(HEALTHY, silent_seconds=16, running_seconds=14, made_a_round=False)),
            Action.WAIT_FIRST_ROUND,
            "waiting for the autoscaler's first round",
        ),  # not yet stalled: it only just started
        (  # its first round, before the head's raylet registered: `ray start` on the head may still time out
            replace(RUNNING, memory=Memory(phase="Updating", head_uid="uid-h"), autoscaler={"usage": {}}),
            Action.WAIT_FIRST_ROUND,
            "waiting for the head's Ray node to join the cluster",
        ),
        (
            replace(RUNNING, memory=Memory(phase="Updating", head_uid="uid-h"), autoscaler={"usage": {"memory": {}}}),
            Action.RUN,
            "",
        ),
        (replace(RUNNING, autoscaler={"usage": {}}), Action.RUN, ""),  # Running stays so: its head no longer starts
        (
            replace(RUNNING, monitor=replace(HEALTHY, exit_code=5)),
            Action.AUTOSCALER_FAILED,
            "the autoscaler ran out of memory: over its limit of 100 MiB",
        ),  # the kernel refused it more (RLIMIT_DATA)
        (
            replace(RUNNING, monitor=replace(HEALTHY, exit_code=-6)),
            Action.AUTOSCALER_FAILED,
            "the autoscaler exited with code -6 (aborted): most likely out of memory, over its limit of 100 MiB",
        ),
        (replace(RUNNING, outdated_workers=2), Action.REPLACE_WORKERS, "replacing 2 workers of changed podTypes"),
        (
            replace(RUNNING, monitor=replace(HEALTHY, round_since_config=False)),
            Action.APPLY_SPEC,
            "applying the new spec",
        ),
        (RUNNING, Action.RUN, ""),
    ],
)
def test_the_first_step_that_applies_is_taken_with_its_reason(observation, action, message):
    step = decide(observation, SETTINGS)
    assert (step.action, step.message) == (action, message)


def test_a_failure_whose_message_names_a_pod_has_a_cause_without_it():
    """Failures of one cause make one Event with a count: the pod's name, new each time, stays out of it."""
    step = decide(replace(RUNNING, head=STOPPED_HEAD), SETTINGS)
    assert step.cause == "the head pod is Failed: container ray-node exited with code 127: bash: ray: command not found"


def test_a_failure_repeated_says_how_many_times_in_a_row():
    step = Step(Action.HEAD_GONE, "the head pod is gone")
    assert failure_reason(step, 1) == "the head pod is gone"
    assert failure_reason(step, 3) == "the head pod is gone (3 times in a row)"


@pytest.mark.parametrize(
    "observation, seconds",
    [
        (replace(RUNNING, head=pod("h", phase="Pending", ip="")), None),  # the pod watch says when it runs
        (replace(RUNNING, head=None, memory=Memory()), None),  # the new head's ADDED event wakes it
        (replace(RUNNING, problems=("bad",)), None),  # only a new spec helps
        (replace(RUNNING, gcs_answers=False), 1.0),  # the GCS has no event: it is probed
        (replace(RUNNING, head=None, memory=Memory(), pods_starting=3), 2.0),  # other clusters' pods: polled
        (replace(RUNNING, head=None, memory=Memory(phase="Updating", backoff_seconds=3.5)), 3.5),
        (replace(RUNNING, monitor=None, memory=Memory(head_uid="uid-h", backoff_seconds=7)), 7),
        (replace(RUNNING, monitor=None), 5.0),  # starting: its first round is due within an interval
        (
            replace(
                RUNNING, monitor=replace(HEALTHY, exit_code=1), memory=Memory(head_uid="uid-h", failures_in_a_row=2)
            ),
            SETTINGS.restart_delay(3, spread=0.0),
        ),  # the earliest end of the backoff after this third failure in a row
        (RUNNING, 15.0),  # the autoscaler's health: stall_rounds (3) x its interval (5), sooner than its status (30)
        (replace(RUNNING, ownership="unowned"), 0.0),  # claimed: on with it at once
        (replace(RUNNING, ownership="elsewhere", owner=OTHER, foreign=True), 5.0),  # another install's Lease is read
        (
            replace(RUNNING, ownership="elsewhere", owner=OTHER),
            None,
        ),  # a replica's: its Lease's changes wake the cluster
        (replace(RUNNING, ownership="for a peer", successor="op-c"), None),
        (replace(RUNNING, ownership="hand over", successor="op-c"), None),
        (replace(RUNNING, ownership="fenced"), 5.0),
    ],
)
def test_what_only_time_shows_is_looked_at_when_due(observation, seconds):
    assert recheck_seconds(decide(observation, SETTINGS), observation, SETTINGS) == seconds


def owned_pod(name: str, owner: str = "rc-uid", drain: str | None = None, grace: int | None = None) -> dict:
    """A pod owned by the RayCluster of uid `owner` ("": by none), made to drain `drain` seconds, being deleted with
    `grace` (None: not being deleted)."""
    metadata: dict = {"name": name, "ownerReferences": [{"uid": owner}] if owner else []}
    if drain:
        metadata["annotations"] = {DRAIN_ANNOTATION: drain}
    if grace is not None:
        metadata.update(deletionTimestamp="2026-12-07T00:00:00Z", deletionGracePeriodSeconds=grace)
    return {"metadata": metadata}


@pytest.mark.parametrize(
    "pod, finalizers, deleted",
    [
        (owned_pod("head"), [], True),
        (owned_pod("worker", drain="120"), [], True),
        (owned_pod("of-another-cluster", owner="other-uid"), [], False),  # a RayCluster of the same name, re-created
        (owned_pod("orphaned-already", owner=""), [], False),
        (owned_pod("head"), ["orphan"], False),  # deleted with propagationPolicy Orphan
        (owned_pod("worker", drain="120"), ["foregroundDeletion"], True),
        (owned_pod("collected-draining", drain="120", grace=135), [], True),  # again, with the shorter grace
        (owned_pod("collected-draining-shortly", drain="120", grace=15), [], False),
        (owned_pod("collected-head", grace=30), [], False),  # stops Ray at once anyway
    ],
)
def test_what_goes_at_once_with_a_deleted_raycluster(pod, finalizers, deleted):
    body = {"metadata": {"name": "rc", "uid": "rc-uid", "finalizers": finalizers}}
    assert deleted_with(body, [pod], grace_after=15) == ([pod] if deleted else [])
