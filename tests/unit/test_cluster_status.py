"""A RayCluster's status, computed from an observation and the step decided on it: no Ray, no API server, no root."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from autoscaler_bridge.names import DRAIN_ANNOTATION
from ray_operator.cluster_status import drain_events, pod_counts, status_for
from ray_operator.decide import Action, Step, decide
from ray_operator.observation import Memory, draining
from tests.unit.test_decide import HEALTHY, RUNNING, SETTINGS, STARVED, pod

READY = [{"type": "Ready", "status": "True"}]


def conditions(fields: dict) -> dict:
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in fields["conditions"]}


@pytest.mark.parametrize(
    "observation, phase, message",
    [
        (RUNNING, "Running", ""),
        (
            replace(RUNNING, problems=("headPodType: no such podType",)),
            "Error",
            "invalid RayCluster: headPodType: no such podType",
        ),
        (replace(RUNNING, head=None, memory=Memory()), "Updating", "creating the head pod"),
        (
            replace(RUNNING, gcs_answers=False, memory=Memory(head_uid="uid-h")),
            "Updating",
            "waiting for Ray on the head pod (GCS 10.0.0.2:6379)",
        ),
        # While recovering, the failure leads and what is awaited follows.
        (
            replace(
                RUNNING,
                monitor=None,
                memory=Memory(
                    head_uid="uid-h",
                    recovering=True,
                    backoff_seconds=4,
                    failure="the autoscaler exited with code 1 (2 times in a row)",
                ),
            ),
            "AutoscalingExceptionRecovery",
            "the autoscaler exited with code 1 (2 times in a row); restarting the autoscaler in 4s",
        ),
        (
            replace(
                RUNNING, monitor=replace(HEALTHY, exit_code=1), memory=Memory(head_uid="uid-h", failures_in_a_row=2)
            ),
            "AutoscalingExceptionRecovery",
            "the autoscaler exited with code 1 (3 times in a row)",
        ),
        (replace(RUNNING, outdated_workers=1), "Updating", "replacing 1 workers of changed podTypes"),
        (  # a starved autoscaler is no failure: the phase stays
            replace(RUNNING, monitor=replace(HEALTHY, silent_seconds=20, starved_seconds=5)),
            "Running",
            STARVED,
        ),
        (
            replace(RUNNING, monitor=replace(HEALTHY, exit_code=3, error="the cluster runs Ray 2.40.0")),
            "Error",
            "the cluster runs Ray 2.40.0",
        ),
    ],
)
def test_each_step_leaves_its_phase_and_message(observation, phase, message):
    fields = status_for(observation, decide(observation, SETTINGS), SETTINGS)
    assert (fields["phase"], fields["message"]) == (phase, message)


def test_a_failure_counts_one_more_restart_and_says_why_in_the_condition():
    observation = replace(RUNNING, monitor=replace(HEALTHY, exit_code=-9), memory=Memory(head_uid="uid-h", retries=4))
    fields = status_for(observation, decide(observation, SETTINGS), SETTINGS)
    assert fields["autoscalerRetries"] == 5
    assert conditions(fields) == {
        "HeadReady": ("True", "GCSAnswers", "Ray's GCS answers at 10.0.0.2:6379"),
        "AutoscalerHealthy": ("False", "Failed", "the autoscaler exited with code -9"),
    }


@pytest.mark.parametrize(
    "observation, head_ready, autoscaler",
    [
        (
            replace(RUNNING, head=None, memory=Memory()),
            ("False", "NoHeadPod", "the cluster has no head pod"),
            ("False", "WaitingForHead", "the autoscaler starts once the head's GCS answers"),
        ),
        (
            replace(RUNNING, head=pod("h", phase="Pending", ip=""), memory=Memory()),
            ("False", "HeadPodStarting", "the head pod h is Pending"),
            ("False", "WaitingForHead", "the autoscaler starts once the head's GCS answers"),
        ),
        (
            replace(RUNNING, gcs_answers=False),
            ("False", "GCSNotAnswering", "Ray's GCS on the head pod does not answer at 10.0.0.2:6379"),
            ("False", "WaitingForHead", "the autoscaler starts once the head's GCS answers"),
        ),
        (
            replace(RUNNING, monitor=replace(HEALTHY, made_a_round=False)),
            ("True", "GCSAnswers", "Ray's GCS answers at 10.0.0.2:6379"),
            ("False", "Starting", "waiting for the autoscaler's first round"),
        ),
        (
            replace(
                RUNNING,
                monitor=None,
                memory=Memory(
                    head_uid="uid-h",
                    recovering=True,
                    backoff_seconds=2,
                    failure="the autoscaler made no progress for 61s",
                ),
            ),
            ("True", "GCSAnswers", "Ray's GCS answers at 10.0.0.2:6379"),
            ("False", "RestartBackoff", "the autoscaler made no progress for 61s; restarting the autoscaler in 2s"),
        ),
        (
            RUNNING,
            ("True", "GCSAnswers", "Ray's GCS answers at 10.0.0.2:6379"),
            ("True", "Running", "the autoscaler makes its rounds"),
        ),
        (
            replace(RUNNING, monitor=replace(HEALTHY, silent_seconds=20, starved_seconds=5)),
            ("True", "GCSAnswers", "Ray's GCS answers at 10.0.0.2:6379"),
            ("False", "Starved", STARVED),
        ),
    ],
)
def test_conditions_say_where_the_cluster_is_and_why(observation, head_ready, autoscaler):
    fields = status_for(observation, decide(observation, SETTINGS), SETTINGS)
    assert conditions(fields) == {"HeadReady": head_ready, "AutoscalerHealthy": autoscaler}


def test_nothing_is_written_while_holding():
    assert status_for(RUNNING, Step(Action.HOLD, "the cluster runs Ray 2.40.0"), SETTINGS) is None


VIEW = {"usage": {"CPU": "1/3"}, "usageSummary": "CPU 1/3", "pendingDemand": [], "demandSummary": ""}
INFEASIBLE = {**VIEW, "message": "no podType can hold {CPU: 100}: add a podType with enough resources, or ask for less"}


@pytest.mark.parametrize(
    "observation, written",
    [
        (replace(RUNNING, autoscaler=VIEW), VIEW),  # the first view
        (replace(RUNNING, autoscaler=VIEW, memory=replace(RUNNING.memory, autoscaler=VIEW)), None),  # unchanged
        # Changed, but the last was written too recently: a busy cluster's usage changes every round.
        (
            replace(
                RUNNING, autoscaler=INFEASIBLE, memory=replace(RUNNING.memory, autoscaler=VIEW, autoscaler_due=False)
            ),
            None,
        ),
        (replace(RUNNING, autoscaler=INFEASIBLE, memory=replace(RUNNING.memory, autoscaler=VIEW)), INFEASIBLE),
        (replace(RUNNING, autoscaler=VIEW, head=None, memory=Memory()), None),  # no autoscaler running: not its view
    ],
)
def test_the_autoscalers_view_is_written_when_it_changed_and_is_due(observation, written):
    fields = status_for(observation, decide(observation, SETTINGS), SETTINGS)
    assert fields.get("autoscaler") == written


def test_running_with_demand_no_podtype_can_hold_says_so_in_the_message():
    fields = status_for(replace(RUNNING, autoscaler=INFEASIBLE), decide(RUNNING, SETTINGS), SETTINGS)
    assert fields["phase"] == "Running" and fields["message"].startswith("no podType can hold {CPU: 100}")


def test_counts_per_podtype_and_why_no_more_are_launched():
    now = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
    stamp = (now - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    workers = (
        pod("w1", kind="worker", conditions=READY),
        pod("w2", kind="worker", phase="Pending", ip=""),
        pod("w3", kind="worker", phase="Pending", ip=""),
    )
    for worker in workers:
        worker["metadata"]["creationTimestamp"] = stamp
    deleted = pod("w4", kind="worker")
    deleted["metadata"].update(deletionTimestamp=stamp, annotations={DRAIN_ANNOTATION: "120"})
    observation = replace(RUNNING, workers=workers, deleted_workers=(deleted,), now=now)
    counts = pod_counts(observation, replace(SETTINGS, max_pending_pods=2))
    assert counts == {
        "podTypes": [
            {"name": "head", "desired": 0, "ready": 0, "pending": 0, "draining": 0},
            {
                "name": "worker",
                "desired": 3,
                "ready": 1,
                "pending": 2,
                "draining": 1,
                "message": "2 pods are Pending (the bound is 2): no more are launched until they start",
            },
        ],
        "desiredWorkers": 3,
        "readyWorkers": 1,
        "drainingWorkers": 1,
    }


def test_a_worker_that_drains_has_one_event_and_one_that_reached_its_deadline_another():
    deleted, late, done = (
        pod("w2", kind="worker"),
        pod("w3", kind="worker", phase="Failed"),
        pod("w4", kind="worker", phase="Failed"),
    )
    stops = pod("w5", kind="worker")  # made with no drain (drainTimeoutSeconds 0): Ray stops at once
    late["status"]["containerStatuses"] = [
        {
            "name": "ray-node",
            "state": {
                "terminated": {
                    "exitCode": 124,
                    "message": "draining Ray node n1 for at most 60s\n"
                    "drain deadline of 60s passed; still running: ray::train\n",
                }
            },
        }
    ]
    done["status"]["containerStatuses"] = [{"name": "ray-node", "state": {"terminated": {"exitCode": 143}}}]
    for worker in (deleted, late, done, stops):
        worker["metadata"]["deletionTimestamp"] = "2026-12-05T05:00:00Z"
    for worker in (deleted, late, done):
        worker["metadata"]["annotations"] = {
            DRAIN_ANNOTATION: "60"
        }  # what the pod was made with, whatever the spec now
    assert draining(deleted) and not draining(late) and not draining(stops) and not draining(pod("w1", kind="worker"))
    observation = replace(RUNNING, deleted_workers=(deleted, late, done, stops))
    assert observation.draining == (deleted,)
    assert drain_events(observation, frozenset()) == [
        (
            "Draining",
            "w2",
            "worker pod w2 (worker) was deleted and drains: it takes no new work, and Ray stops once its "
            "running work is done, at most 60s (drainTimeoutSeconds)",
        ),
        (
            "DrainDeadlineExceeded",
            "w3",
            "worker pod w3 stopped at its drain deadline: drain deadline of 60s passed; still running: ray::train",
        ),
    ]
    assert drain_events(observation, frozenset({("Draining", "w2"), ("DrainDeadlineExceeded", "w3")})) == []  # once
