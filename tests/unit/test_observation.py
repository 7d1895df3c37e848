"""Which head pods count as starting, for the bound on heads starting at once."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ray_operator.observation import HEAD_START_SECONDS, starting

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)


def head(age_seconds: float, deleting: bool = False) -> dict:
    created = (NOW - timedelta(seconds=age_seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    metadata = {"name": "h", "creationTimestamp": created}
    return {"metadata": {**metadata, **({"deletionTimestamp": created} if deleting else {})}}


@pytest.mark.parametrize(
    ("pod", "cluster_phase", "counted"),
    [
        (head(10), "Updating", True),  # made, Ray not up yet
        (head(10), None, True),  # the cluster's status not written yet
        (head(10), "AutoscalingExceptionRecovery", True),  # a head made again after a failure
        (head(10), "Running", False),  # up: its GCS answered an autoscaler
        (head(10, deleting=True), "Updating", False),  # going
        (head(HEAD_START_SECONDS + 1), "Updating", False),  # never came up: no longer holds a place
        ({"metadata": {"name": "h"}}, "Updating", True),  # no creationTimestamp yet (just made, as cached)
    ],
)
def test_a_head_counts_as_starting_until_its_cluster_runs_for_a_bounded_time(pod, cluster_phase, counted):
    assert starting(pod, cluster_phase, NOW) is counted
