"""The autoscaler's view as the RayCluster's status.autoscaler, and its decisions as Events: tables, no Ray."""

import json

import pytest

from ray_operator.autoscaler_view import autoscaler_status, decision_event

CONFIG = {
    "available_node_types": {
        "rayHeadType": {"resources": {"CPU": 1, "memory": 2**30}},
        "rayWorkerType": {"resources": {"CPU": 2, "GPU": 1}},
    }
}


def test_usage_demand_launches_and_their_one_line_summaries():
    view = {
        "usage": {
            "CPU": [3.0, 4.0],
            "GPU": [0.0, 1.0],
            "memory": [2**30, 3 * 2**30],
            "node:10.0.0.2": [0.0, 1.0],
            "object_store_memory": [0.0, 0.0],
        },
        "demand": [[{"CPU": 1.0}, 3], [{"CPU": 1.0}, 1], [{"GPU": 1.0, "CPU": 2.0}, 2]],
        "pending_launches": {"rayWorkerType": 2, "rayHeadType": 0},
        "failed_nodes": [["10.0.0.9", "rayWorkerType"]],
    }
    assert autoscaler_status(view, CONFIG) == {
        "usage": {"CPU": "3/4", "GPU": "0/1", "memory": "1.0/3.0 GiB"},
        "usageSummary": "CPU 3/4, GPU 0/1",
        "pendingDemand": [{"resources": {"CPU": 1.0}, "count": 4}, {"resources": {"GPU": 1.0, "CPU": 2.0}, "count": 2}],
        "demandSummary": "4x {CPU: 1}, 2x {CPU: 2, GPU: 1}",
        "demandTotal": 6,
        "pendingLaunches": {"rayWorkerType": 2},
        "failedLaunches": {"rayWorkerType": 1},
    }


def test_demand_no_podtype_can_hold_is_called_infeasible():
    view = {"usage": {"CPU": [0.0, 1.0]}, "demand": [[{"CPU": 100.0}, 1], [{"CPU": 1.0}, 2], [{"TPU": 1.0}, 1]]}
    status = autoscaler_status(view, CONFIG)
    assert status["infeasibleDemand"] == [
        {"resources": {"CPU": 100.0}, "count": 1},
        {"resources": {"TPU": 1.0}, "count": 1},
    ]
    assert status["message"] == (
        "no podType can hold {CPU: 100}, {TPU: 1}: add a podType with enough resources, or ask for less"
    )


def test_a_steady_cluster_has_a_steady_view():
    view = {"usage": {"CPU": [0.0, 2.0]}, "demand": [], "pending_launches": {}, "failed_nodes": []}
    assert autoscaler_status(view, CONFIG) == autoscaler_status(dict(view), CONFIG)
    assert autoscaler_status(view, CONFIG)["demandSummary"] == "" and "infeasibleDemand" not in autoscaler_status(
        view, CONFIG
    )


def test_a_view_of_any_demand_stays_small():
    """1,000 shapes once made a 1.66 MB status patch, over etcd's request limit."""
    shapes = [[{"CPU": 1.0, f"custom{i}": 1.0}, 1 + (i == 500)] for i in range(1000)]
    status = autoscaler_status({"usage": {"CPU": [1.0, 4.0]}, "demand": shapes}, CONFIG)
    assert (
        len(status["pendingDemand"]) == 10
        and {"resources": {"CPU": 1.0, "custom500": 1.0}, "count": 2} in status["pendingDemand"]
    )
    assert status["demandTotal"] == 1001 and len(status["infeasibleDemand"]) == 10
    assert status["demandSummary"].endswith(", and 990 more shapes") and len(status["message"]) <= 1024
    wide = [[{f"r{i}_{j}": 1.0 for j in range(400)}, 1] for i in range(10)]  # shapes of very many resources each
    status = autoscaler_status({"usage": {}, "demand": wide}, CONFIG)
    assert status["pendingDemand"] == [] and "infeasibleDemand" not in status and status["demandTotal"] == 10
    assert len(json.dumps(status)) < 32 * 1024 and len(status["demandSummary"]) == 1024


@pytest.mark.parametrize(
    "decision, reason, warning",
    [
        ("Adding 2 node(s) of type rayWorkerType.", "ScaledUp", False),
        ("Removing 1 nodes of type rayWorkerType (idle).", "ScaledDown", False),
        ("Drain rejected: kept 1 idle nodes of type rayWorkerType that took work again.", "DrainRejected", False),
        ("Resized to 4 CPUs.", "Resized", False),
        (
            "Failed to launch 2 node(s) of type rayWorkerType. (Pending pods): 2 pods are Pending (the bound is 2): no "
            "more are launched until they start",
            "LaunchesHeldBack",
            True,
        ),
        (
            "Failed to launch 1 node(s) of type rayWorkerType. (Pods unknown): the watch of pods is not synced",
            "LaunchFailed",
            True,
        ),
        ("Failed to launch 1 node(s) of type rayWorkerType.", "LaunchFailed", True),
        (
            "Error: No available node types can fulfill resource request {'CPU': 100.0}. Add suitable node types to "
            "this cluster to resolve this issue.",
            "InfeasibleDemand",
            True,
        ),
        ("Restarting 1 nodes of type rayWorkerType (lost contact with raylet).", "NodeRestarted", True),
        ("Something new.", "Autoscaler", False),
    ],
)
def test_each_decision_becomes_an_event_with_its_reason(decision, reason, warning):
    got_reason, message, got_warning = decision_event(decision, [[{"CPU": 1.0}, 3], [{"CPU": 1.0}, 1]])
    assert (got_reason, got_warning) == (reason, warning)
    assert message == (f"{decision} Pending demand: 4x {{CPU: 1}}." if reason == "ScaledUp" else decision)


def test_a_scale_up_without_demand_says_only_what_was_added():
    assert decision_event("Adding 1 node(s) of type rayWorkerType.", []) == (
        "ScaledUp",
        "Adding 1 node(s) of type rayWorkerType.",
        False,
    )
