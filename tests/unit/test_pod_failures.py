"""Why a pod stopped, as the RayCluster's status and Events quote it: a table of pod statuses."""

import pytest

from ray_operator.pod_failures import why_stopped


def terminated(name, code, reason="Error", message=None):
    state = {"exitCode": code, "reason": reason}
    if message is not None:
        state["message"] = message
    return {"name": name, "state": {"terminated": state}}


@pytest.mark.parametrize(
    "status, why",
    [
        (
            {
                "phase": "Failed",
                "containerStatuses": [terminated("ray-node", 127, message="starting\nbash: ray: command not found\n")],
            },
            "container ray-node exited with code 127: bash: ray: command not found",
        ),
        (
            {"phase": "Failed", "containerStatuses": [terminated("ray-node", 137, reason="OOMKilled")]},
            "container ray-node exited with code 137 (OOMKilled)",
        ),
        (
            {
                "phase": "Failed",
                "containerStatuses": [
                    terminated("sidecar", 0, reason="Completed"),
                    terminated("ray-node", 2, message="x" * 500),
                ],
            },
            "container ray-node exited with code 2: " + "x" * 300,
        ),
        (
            {"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."},
            "Evicted: The node was low on resource: memory.",
        ),
        (
            {"phase": "Succeeded", "containerStatuses": [terminated("ray-node", 0, reason="Completed")]},
            "no container says why",
        ),
        ({}, "no container says why"),
    ],
)
def test_why_a_pod_stopped(status, why):
    assert why_stopped({"metadata": {"name": "p"}, "status": status}) == why
