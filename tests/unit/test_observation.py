"""Which Ray pods count as starting, and where, for the bound on Ray pods starting at once on one node."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from autoscaler_bridge.names import JOINED_TAG
from ray_operator.observation import START_SECONDS, busiest_node_starting, starting

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)


def head(age_seconds: float, deleting: bool = False, kind: str = "head", labels: dict | None = None) -> dict:
    created = (NOW - timedelta(seconds=age_seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    metadata = {"name": "h", "creationTimestamp": created, "labels": {"ray-node-type": kind, **(labels or {})}}
    return {"metadata": {**metadata, **({"deletionTimestamp": created} if deleting else {})}}


def worker(age_seconds: float, joined: bool = False) -> dict:
    return head(age_seconds, kind="worker", labels={JOINED_TAG: "true"} if joined else None)


JUST_MADE = {"metadata": {"name": "h", "labels": {"ray-node-type": "head"}}}  # no creationTimestamp yet, as cached


def waiting(age_seconds: float, reason: str) -> dict:
    """A head whose container waits for `reason`."""
    container = {"name": "ray-node", "state": {"waiting": {"reason": reason}}}
    return {**head(age_seconds), "status": {"phase": "Pending", "containerStatuses": [container]}}


@pytest.mark.parametrize(
    ("pod", "cluster_phase", "counted"),
    [
        (head(10), "Updating", True),  # made, Ray not up yet
        (head(10), None, True),  # the cluster's status not written yet
        (head(10), "AutoscalingExceptionRecovery", True),  # a head made again after a failure
        (head(10), "Running", False),  # up: its GCS answered an autoscaler
        (head(10, deleting=True), "Updating", True),  # going, its container still running
        (head(START_SECONDS + 1), "Updating", False),  # never came up: no longer holds a place
        (JUST_MADE, "Updating", True),
        (waiting(10, "ContainerCreating"), "Updating", True),
        ({**head(10), "status": {"phase": "Failed"}}, "AutoscalingExceptionRecovery", False),  # stopped
        (waiting(10, "ImagePullBackOff"), "Updating", False),  # runs nothing: holds no place from other clusters
        (waiting(10, "CreateContainerConfigError"), "Updating", False),  # a missing Secret, say
        (worker(10), None, True),  # made, its Ray node not joined yet
        (worker(10, joined=True), None, False),  # its autoscaler saw its Ray node
        (worker(10), "Running", True),  # a worker's own node says, not its cluster's phase
        (worker(START_SECONDS + 1), None, False),  # never joined: no longer holds a place
    ],
)
def test_a_ray_pod_counts_as_starting_until_its_node_joins_for_a_bounded_time(pod, cluster_phase, counted):
    assert starting(pod, cluster_phase, NOW) is counted


def on(
    node: str | None = None, unschedulable: bool = False, age_seconds: float = 10, kind: str = "head", joined=False
) -> dict:
    """A Ray pod placed on `node`, or not placed yet (found no node if `unschedulable`)."""
    placed = {"spec": {"nodeName": node}} if node else {}
    verdict = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}] if unschedulable else []
    pod = worker(age_seconds, joined) if kind == "worker" else head(age_seconds)
    return {**pod, **placed, "status": {"phase": "Pending", "conditions": verdict}}


@pytest.mark.parametrize(
    ("heads", "count"),
    [
        ([], 0),
        ([on("a"), on("b"), on("a")], 2),  # the busiest node: a
        ([on("a"), on("b"), on(None)], 2),  # not placed yet: it may land on a (or b)
        ([on(None), on(None)], 2),  # nothing placed yet: both may land on one node
        ([on("a"), on(None, unschedulable=True)], 1),  # no node has room for it: it loads none
        ([on("a"), on("a", age_seconds=START_SECONDS + 1)], 1),  # never came up: no longer counted
        ([on("a"), on("a", kind="worker"), on("b", kind="worker")], 2),  # heads and workers alike
        ([on("a"), on("a", kind="worker", joined=True)], 1),  # a worker whose Ray node joined: started
    ],
)
def test_pods_starting_are_counted_on_the_busiest_node_and_unplaced_ones_on_every_node(heads, count):
    assert busiest_node_starting(((h, "Updating") for h in heads), NOW) == count


def test_heads_of_running_clusters_are_not_starting_wherever_they_are():
    assert busiest_node_starting([(on("a"), "Running"), (on(None), "Running"), (on("a"), None)], NOW) == 1
