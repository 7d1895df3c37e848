"""What one reconciliation of a RayCluster saw: a frozen observation, gathered at the edge (ClusterController.observe)
and read by the pure decision (ray_operator.decide) and status (ray_operator.cluster_status) functions.

Nothing here makes a request or reads a file: tests build observations by hand.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ray.autoscaler.tags import NODE_KIND_HEAD, TAG_RAY_NODE_KIND

from autoscaler_bridge.names import DRAIN_ANNOTATION, JOINED_TAG

from ray_operator.shards import MINE
from ray_operator.status import RUNNING

START_SECONDS = 300.0  # a Ray pod that has not joined by then never will: it stops counting as starting
CANNOT_START = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"}
)


def pod_phase(pod: dict[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase", "Pending")


def stopped(pod: dict[str, Any]) -> bool:
    """Whether every container of the pod has ended for good (Failed or Succeeded): it runs nothing again."""
    return pod_phase(pod) in ("Failed", "Succeeded")


def drain_seconds(pod: dict[str, Any]) -> int:
    """How long a worker pod drains once deleted (what it was made with); 0: it stops at once."""
    value = (pod["metadata"].get("annotations") or {}).get(DRAIN_ANNOTATION, "0")
    return int(value) if value.isdigit() else 0


def draining(pod: dict[str, Any]) -> bool:
    """A deleted pod that drains and whose Ray still runs (autoscaler_bridge.drain_on_term)."""
    return bool(pod["metadata"].get("deletionTimestamp")) and pod_phase(pod) == "Running" and drain_seconds(pod) > 0


def pod_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return pod_phase(pod) == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
    )


def is_head(pod: dict[str, Any]) -> bool:
    return (pod["metadata"].get("labels") or {}).get(TAG_RAY_NODE_KIND) == NODE_KIND_HEAD


def cannot_start(pod: dict[str, Any]) -> bool:
    """Whether a container of the pod waits for what retrying alone does not bring (an image that cannot be pulled,
    a config that cannot be made): the pod runs nothing."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return any(((c.get("state") or {}).get("waiting") or {}).get("reason") in CANNOT_START for c in statuses)


def starting(pod: dict[str, Any], cluster_phase: str | None, now: datetime) -> bool:
    """Whether a Ray pod is starting, as the bound on Ray pods starting at once on a node counts it: its Ray node has
    not joined the cluster (a head's has once its RayCluster is Running: ray_operator.decide; a worker's once its
    autoscaler labelled it JOINED_TAG), it was made less than START_SECONDS ago (one that never comes up stops
    holding a place), is not stopped (Failed or Succeeded) and not stuck before it runs anything (cannot_start: one
    tenant's bad image holds no place from others). One being deleted counts until it has stopped: its container
    starts Ray on (a worker deleted as it starts waits, draining, for its Ray node to join)."""
    metadata = pod["metadata"]
    joined = cluster_phase == RUNNING if is_head(pod) else JOINED_TAG in (metadata.get("labels") or {})
    if joined or stopped(pod) or cannot_start(pod):
        return False
    created = datetime.fromisoformat(metadata.get("creationTimestamp") or now.isoformat())
    return (now - created).total_seconds() < START_SECONDS


def unschedulable(pod: dict[str, Any]) -> bool:
    """Whether a scheduler found no node for the pod (its PodScheduled condition is False)."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "PodScheduled" and c.get("status") == "False" for c in conditions)


def busiest_node_starting(pods: Iterable[tuple[dict[str, Any], str | None]], now: datetime) -> int:
    """How many Ray pods (each with its RayCluster's phase) start on the node that starts the most of them: what the
    bound on Ray pods starting at once counts, since Ray pods starting together on one node overload it. A pod counts
    on the node it was placed on (spec.nodeName); one not placed yet may land on any node, so it counts on each,
    unless a scheduler found no node for it (it loads none)."""
    per_node: Counter[str] = Counter()
    unplaced = 0
    for pod, phase in pods:
        if not starting(pod, phase, now):
            continue
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            per_node[node] += 1
        elif not unschedulable(pod):
            unplaced += 1
    return max(per_node.values(), default=0) + unplaced


@dataclass(frozen=True)
class MonitorState:
    """The cluster's autoscaler process as last seen."""

    exit_code: int | None = None  # None while it runs
    error: str | None = None  # what it wrote before exiting: its exception, or why it would not autoscale
    running_seconds: float = 0.0  # since it was started
    silent_seconds: float = 0.0  # since its last round
    starved_seconds: float = 0.0  # of those, how long it waited for a CPU (runnable, not run)
    made_a_round: bool = False  # since it was started
    round_since_config: bool = False  # a round on the config file as last written


@dataclass(frozen=True)
class Memory:
    """What the controller remembers between reconciliations (its only state), as it was when this one began."""

    phase: str | None = None  # status.phase as last written
    retries: int = 0  # status.autoscalerRetries as last written
    head_uid: str | None = None  # the head pod the cluster has been running on, if any
    recovering: bool = False  # a failure was seen and the cluster has not been Running since
    failure: str = ""  # that failure's reason, with how many times in a row
    failures_in_a_row: int = 0
    backoff_seconds: float = 0.0  # until a new head or autoscaler may be started (0: now)
    unsupported: str | None = None  # why this generation of the spec cannot be autoscaled, if it cannot
    autoscaler: dict[str, Any] | None = None  # status.autoscaler as last written
    autoscaler_due: bool = True  # a changed status.autoscaler may be written now


@dataclass(frozen=True)
class Observation:
    """One reconciliation's view of a RayCluster and what belongs to it."""

    generation: int | None
    ownership: str = MINE  # ray_operator.shards' verdict
    owner: dict[str, Any] = field(default_factory=dict)  # status.operator: {identity, lease} of its owner, if any
    successor: str = ""  # the member of this operator's group chosen to run the cluster
    foreign: bool = False  # its owner is an operator of another group (another install)
    problems: tuple[str, ...] = ()  # the spec's validation problems
    config: dict[str, Any] | None = None  # the autoscaler config, when the spec has no problems
    service_exists: bool = False  # the head Service
    budget_exists: bool = False  # the head's PodDisruptionBudget
    head: dict[str, Any] | None = None
    pods_starting: int = 0  # when it has no head: busiest_node_starting over every Ray pod, and the claims (a bound)
    head_outdated: bool = False  # the head pod was made from another head podType template than the spec's
    workers: tuple[dict[str, Any], ...] = ()  # not being deleted
    deleted_workers: tuple[dict[str, Any], ...] = ()  # being deleted: draining, or stopped and about to go
    outdated_workers: int = 0  # workers made from a worker podType template the spec no longer has
    gcs_address: str = ""  # ip:port of the head's GCS, once the head runs
    gcs_answers: bool = False
    monitor: MonitorState | None = None  # None: no autoscaler process for this head
    autoscaler: dict[str, Any] | None = None  # status.autoscaler from the autoscaler's last view
    decisions: tuple[tuple[str, str, bool], ...] = ()  # the autoscaler's decisions since the last look, as Events
    auth: dict[str, Any] = field(default_factory=dict)  # status.rayAuthentication
    memory: Memory = Memory()
    now: datetime | None = None  # for how long pods have been Pending

    @property
    def head_name(self) -> str:
        return self.head["metadata"]["name"] if self.head else ""

    @property
    def head_ip(self) -> str:
        return ((self.head or {}).get("status") or {}).get("podIP") or ""

    @property
    def draining(self) -> tuple[dict[str, Any], ...]:
        """The deleted workers whose Ray still runs: they drain."""
        return tuple(w for w in self.deleted_workers if draining(w))
