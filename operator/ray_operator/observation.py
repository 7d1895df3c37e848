"""What one reconciliation of a RayCluster saw: a frozen observation, gathered at the edge (ClusterController.observe)
and read by the pure decision (ray_operator.decide) and status (ray_operator.cluster_status) functions.

Nothing here makes a request or reads a file: tests build observations by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ray.autoscaler.tags import NODE_KIND_HEAD, TAG_RAY_NODE_KIND

from ray_operator.shards import MINE


def pod_phase(pod: dict[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase", "Pending")


def pod_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return pod_phase(pod) == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
    )


def is_head(pod: dict[str, Any]) -> bool:
    return (pod["metadata"].get("labels") or {}).get(TAG_RAY_NODE_KIND) == NODE_KIND_HEAD


@dataclass(frozen=True)
class MonitorState:
    """The cluster's autoscaler process as last seen."""

    exit_code: int | None = None  # None while it runs
    error: str | None = None  # what it wrote before exiting: its exception, or why it would not autoscale
    running_seconds: float = 0.0  # since it was started
    silent_seconds: float = 0.0  # since its last round
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
    head: dict[str, Any] | None = None
    head_outdated: bool = False  # the head pod was made from another head podType template than the spec's
    workers: tuple[dict[str, Any], ...] = ()
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
