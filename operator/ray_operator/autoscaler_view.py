"""Where the autoscaler's view becomes the RayCluster's `status.autoscaler`, and its decisions become Events: pure
functions of what the cluster's monitor wrote in its last round (ray_operator.monitor_process) and of the cluster's
autoscaler config.

- usage: Ray resources used of total ("CPU": "3/4", "memory": "1.5/4.0 GiB"); Ray's per-node resources left out;
- pendingDemand: the resource shapes tasks, actors and placement groups wait for, with counts;
- infeasibleDemand: those no podType can ever hold (said plainly: more of them will not help);
- pendingLaunches / failedLaunches: per podType;
- usageSummary / demandSummary: one short line each, for `kubectl get rayclusters -o wide`;
- demandTotal: how many of all shapes are waited for.

Bounded whatever the cluster's work asks for: the most waited-for MAX_SHAPES shapes are listed (the summary says
how many more there are, the ScaledUp Event and the autoscaler's log line have them all), each text at most
MAX_TEXT characters, and a view still over MAX_STATUS_BYTES lists no shapes: a status patch must stay far below
etcd's request limit (1.5 MiB), which 1,000 shapes written four times went over.
"""

from __future__ import annotations

import json
import re
from typing import Any

from autoscaler_bridge.quantities import cut

MEMORY_RESOURCES = ("memory", "object_store_memory")
MAX_SHAPES = 10  # listed in pendingDemand and infeasibleDemand
MAX_USAGE = 32  # resources listed in usage
MAX_TEXT = 1024  # characters of a summary or message
MAX_STATUS_BYTES = 32 * 1024
_PER_NODE_PREFIXES = ("node:", "accelerator_type:")
_DECISIONS = (  # Ray's event summary (its start) → Event reason, warning
    ("Adding", "ScaledUp", False),
    ("Removing", "ScaledDown", False),
    ("Drain rejected", "DrainRejected", False),  # autoscaler_bridge.draining_autoscaler
    ("Resized", "Resized", False),
    ("Restarting", "NodeRestarted", True),
    (re.compile(r"Failed to launch .*\(Pending pods\)"), "LaunchesHeldBack", True),  # the node provider's bound
    ("Failed to launch", "LaunchFailed", True),
    ("Error: No available node types", "InfeasibleDemand", True),
)


def _number(value: float) -> str:
    return f"{value:g}"


def _usage(name: str, used: float, total: float) -> str:
    if name in MEMORY_RESOURCES:
        return f"{used / 2**30:.1f}/{total / 2**30:.1f} GiB"
    return f"{_number(used)}/{_number(total)}"


def _shape(resources: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {_number(v)}" for k, v in sorted(resources.items())) + "}"


def fits(shape: dict[str, float], resources: dict[str, float]) -> bool:
    return all(resources.get(name, 0) >= amount for name, amount in shape.items())


def pending_demand(shapes: list[list[Any]]) -> list[dict[str, Any]]:
    """Ray's demand ([shape, count] pairs, a shape listed more than once) as one entry per shape."""
    counts: dict[str, tuple[dict[str, float], int]] = {}
    for shape, count in shapes:
        key = _shape(shape)
        counts[key] = (shape, counts.get(key, (shape, 0))[1] + count)
    return [{"resources": shape, "count": count} for _, (shape, count) in sorted(counts.items())]


def demand_summary(demand: list[dict[str, Any]]) -> str:
    """One line: "4x {CPU: 1}, 2x {CPU: 2, GPU: 1}"."""
    return ", ".join(f"{d['count']}x {_shape(d['resources'])}" for d in demand)


def _most_waited_for(demand: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The MAX_SHAPES shapes with the most waiting, in the order of the full list."""
    kept = {id(d) for d in sorted(demand, key=lambda d: -d["count"])[:MAX_SHAPES]}
    return [d for d in demand if id(d) in kept]


def _more(shown: list[Any], every: list[Any]) -> str:
    return f", and {len(every) - len(shown)} more shapes" if len(every) > len(shown) else ""


def autoscaler_status(view: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """`status.autoscaler` from the monitor's last view of the cluster and its config."""
    usage = {
        name: _usage(name, used, total)
        for name, (used, total) in sorted(view.get("usage", {}).items())
        if total and not name.startswith(_PER_NODE_PREFIXES)
    }
    usage = dict(list(usage.items())[:MAX_USAGE])
    demand = pending_demand(view.get("demand", []))
    capacities = [node_type["resources"] for node_type in config["available_node_types"].values()]
    infeasible = [d for d in demand if not any(fits(d["resources"], capacity) for capacity in capacities)]
    failed: dict[str, int] = {}
    for _, node_type in view.get("failed_nodes", []):
        failed[node_type] = failed.get(node_type, 0) + 1
    listed, listed_infeasible = _most_waited_for(demand), _most_waited_for(infeasible)
    status: dict[str, Any] = {
        "usage": usage,
        "usageSummary": cut(
            ", ".join(f"{name} {value}" for name, value in usage.items() if name not in MEMORY_RESOURCES), MAX_TEXT
        ),
        "pendingDemand": listed,
        "demandSummary": cut(demand_summary(listed) + _more(listed, demand), MAX_TEXT),
        "pendingLaunches": {k: v for k, v in sorted(view.get("pending_launches", {}).items()) if v},
        "failedLaunches": dict(sorted(failed.items())),
    }
    if demand:
        status["demandTotal"] = sum(d["count"] for d in demand)
    if infeasible:
        status["infeasibleDemand"] = listed_infeasible
        status["message"] = cut(
            "no podType can hold "
            + ", ".join(_shape(d["resources"]) for d in listed_infeasible)
            + _more(listed_infeasible, infeasible)
            + ": add a podType with enough resources, or ask for less",
            MAX_TEXT,
        )
    if len(json.dumps(status)) > MAX_STATUS_BYTES:  # shapes of very many resources each: the summaries say enough
        status["pendingDemand"] = []
        status.pop("infeasibleDemand", None)
    return status


def decision_event(decision: str, demand: list[list[Any]]) -> tuple[str, str, bool]:
    """The Event (reason, message, warning) for one of the autoscaler's decisions and the demand of the round it was
    made in; a scale-up names the demand it answers."""
    reason, warning = next(
        (
            (r, w)
            for start, r, w in _DECISIONS
            if (decision.startswith(start) if isinstance(start, str) else start.match(decision))
        ),
        ("Autoscaler", False),
    )
    summary = demand_summary(pending_demand(demand))
    if reason == "ScaledUp" and summary:
        decision = f"{decision} Pending demand: {summary}."
    return reason, decision, warning
