"""Where a RayCluster's next step is decided: a pure function of one observation (ray_operator.observation).

One step per reconciliation, the first that applies, each with its reason:

0. this operator's Lease is not renewed → stop its autoscaler (fenced); another live operator owns the cluster, or
   nobody does and another replica is chosen for it → leave it alone (an Event says who, for another install's);
   this replica owns it but another is chosen now → stop the autoscaler, hand it over; nobody owns it, or its
   owner's Lease ran out, and this replica is chosen → claim it;
1. the spec is invalid → Error; nothing is made;
2. the spec's generation runs a Ray the operator cannot autoscale → hold (nothing until the spec changes);
3. the head pod comes from an older head podType template → restart the cluster;
4. the head pod stopped, or is gone after the cluster ran → a counted failure, and the cluster restarts;
5. no head pod → wait out the backoff of earlier failures, then create one;
6. the head pod not running yet, then its GCS not answering → wait;
7. no autoscaler → wait out the backoff, then start one;
8. the autoscaler stopped itself for a lapse of this operator's Lease → start it again, uncounted; it exited (its
   memory limit reached too) or hung → a counted failure (an unsupported Ray: Error);
9. the autoscaler made no round yet → wait; workers of changed podTypes → replace them; a new spec not yet
   read by a round → apply it; else Running.

And, once a RayCluster is deleted, which of its pods the replica that ran it deletes at once (deleted_with).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ray_operator.monitor_process import EXIT_FENCED, EXIT_NO_TOKEN_AUTH, EXIT_OUT_OF_MEMORY, EXIT_UNSUPPORTED_RAY
from ray_operator.observation import Observation, drain_seconds, pod_phase, stopped
from ray_operator.pod_failures import why_stopped
from ray_operator.settings import Settings
from ray_operator.shards import ELSEWHERE, FENCED, FOR_PEER, HAND_OVER, ORPHANED, UNOWNED
from ray_operator.status import RUNNING


class Action(Enum):
    INVALID_SPEC = "InvalidSpec"
    HOLD = "Hold"  # nothing to do, nothing to write
    RESTART_CLUSTER = "RestartCluster"
    HEAD_FAILED = "HeadFailed"
    HEAD_GONE = "HeadGone"
    WAIT_HEAD_BACKOFF = "WaitHeadBackoff"
    WAIT_HEAD_SLOT = "WaitHeadSlot"  # as many Ray pods as the operator lets start at once on a node are starting
    CREATE_HEAD = "CreateHead"
    WAIT_HEAD = "WaitHead"
    WAIT_GCS = "WaitGCS"
    WAIT_AUTOSCALER_BACKOFF = "WaitAutoscalerBackoff"
    START_AUTOSCALER = "StartAutoscaler"
    UNSUPPORTED_RAY = "UnsupportedRay"
    NO_TOKEN_AUTH = "NoTokenAuth"  # Error, and the open head's pods are removed
    AUTOSCALER_FAILED = "AutoscalerFailed"
    AUTOSCALER_STARVED = "AutoscalerStarved"  # late rounds of an autoscaler that waits for a CPU: not restarted (yet)
    WAIT_FIRST_ROUND = "WaitFirstRound"
    REPLACE_WORKERS = "ReplaceWorkers"
    APPLY_SPEC = "ApplySpec"
    RUN = "Run"
    FENCED = "Fenced"  # this operator's Lease is not renewed: no autoscaler, nothing written
    NOT_OURS = "NotOurs"  # another live operator runs the cluster, or another replica is to claim it
    CLAIM = "Claim"  # status.operator becomes this operator, if the RayCluster has not changed meanwhile
    HAND_OVER = "HandOver"  # the autoscaler stops, status.operator becomes the replica chosen for the cluster


# An autoscaler without a round for the stall bound that waited this share of that time for a CPU is starved (the node
# is overloaded: a new one would wait too), not hung; it is restarted only past STARVED_STALL_FACTOR stall bounds.
STARVED_SHARE = 0.1
STARVED_STALL_FACTOR = 3
HEAD_SLOT_SECONDS = 2.0  # how often a cluster waiting for a head start slot looks again
ORPHAN_FINALIZER = "orphan"  # a RayCluster deleted with propagationPolicy Orphan: its pods are to stay

FAILURES = frozenset({Action.HEAD_FAILED, Action.HEAD_GONE, Action.AUTOSCALER_FAILED})
NOT_MINE = frozenset({Action.FENCED, Action.NOT_OURS, Action.CLAIM, Action.HAND_OVER})
ERRORS = frozenset({Action.INVALID_SPEC, Action.UNSUPPORTED_RAY, Action.NO_TOKEN_AUTH})
AUTOSCALING = frozenset({Action.RUN, Action.REPLACE_WORKERS, Action.APPLY_SPEC})


@dataclass(frozen=True)
class Step:
    action: Action
    message: str  # why, or what is awaited: status.message says it
    cause: str = ""  # a failure's reason without what changes from one failure to the next (a pod's name)


def decide(obs: Observation, settings: Settings) -> Step:
    """The one next step for the cluster."""
    memory = obs.memory
    if obs.ownership == FENCED:
        return Step(Action.FENCED, "this operator's Lease is not renewed: it runs no autoscaler until it is")
    if obs.ownership == ELSEWHERE:
        owner = obs.owner
        return Step(Action.NOT_OURS, f"run by the operator {owner.get('identity')} (Lease {owner.get('lease')})")
    if obs.ownership == FOR_PEER:
        return Step(Action.NOT_OURS, f"for the operator {obs.successor} to take")
    if obs.ownership == HAND_OVER:
        return Step(Action.HAND_OVER, f"handing the cluster to the operator {obs.successor}, chosen for it now")
    if obs.ownership in (UNOWNED, ORPHANED):
        taken = f" from {obs.owner.get('identity')}, whose Lease ran out" if obs.ownership == ORPHANED else ""
        return Step(Action.CLAIM, f"taking the cluster over{taken}")
    if obs.problems:
        return Step(Action.INVALID_SPEC, "invalid RayCluster: " + "; ".join(obs.problems))
    if memory.unsupported:
        return Step(Action.HOLD, memory.unsupported)
    head = obs.head
    if head is not None and obs.head_outdated:
        return Step(
            Action.RESTART_CLUSTER,
            "restarting the cluster for the head podType's new pod template",
            cause="the head podType's pod template changed",
        )
    if head is not None and stopped(head):
        why = f"{pod_phase(head)}: {why_stopped(head)}"
        return Step(Action.HEAD_FAILED, f"the head pod {obs.head_name} is {why}", cause=f"the head pod is {why}")
    if head is None:
        if memory.head_uid is not None or memory.phase == RUNNING:
            return Step(Action.HEAD_GONE, "the head pod is gone")
        if memory.backoff_seconds > 0:  # the same backoff as the autoscaler's: no head churn
            return Step(Action.WAIT_HEAD_BACKOFF, f"creating a new head pod in {memory.backoff_seconds:.0f}s")
        return head_slot(obs.pods_starting, settings) or Step(Action.CREATE_HEAD, "creating the head pod")
    if pod_phase(head) != "Running" or not obs.head_ip:
        return Step(Action.WAIT_HEAD, f"waiting for the head pod {obs.head_name} to run")
    if not obs.gcs_answers:
        return Step(Action.WAIT_GCS, f"waiting for Ray on the head pod (GCS {obs.gcs_address})")
    return _autoscaler_step(obs, settings)


def head_slot(pods_starting: int, settings: Settings) -> Step | None:
    """The wait for a place to start a head in, when as many Ray pods as a node may start together start on the
    busiest node (ray_operator.observation.busiest_node_starting, and the places claimed for workers about to be
    made: autoscaler_bridge.start_gate): Ray pods starting together on one node overload it, and each one's start
    fails; None: a head may be made."""
    if not settings.head_places or pods_starting < settings.head_places:
        return None
    return waiting_for_head_slot(pods_starting, settings)


def waiting_for_head_slot(pods_starting: int, settings: Settings) -> Step:
    kept = settings.kept_for_workers
    return Step(
        Action.WAIT_HEAD_SLOT,
        f"creating the head pod once fewer than {settings.head_places} Ray pods are starting on each node "
        f"({pods_starting} are on the busiest, counting those not placed yet"
        + (f"; {kept} more place is kept for workers)" if kept else ")"),
    )


def _autoscaler_step(obs: Observation, settings: Settings) -> Step:
    monitor = obs.monitor
    if monitor is None:
        if obs.memory.backoff_seconds > 0:
            return Step(
                Action.WAIT_AUTOSCALER_BACKOFF, f"restarting the autoscaler in {obs.memory.backoff_seconds:.0f}s"
            )
        return Step(Action.START_AUTOSCALER, "starting the autoscaler")
    if monitor.exit_code == EXIT_FENCED:
        return Step(Action.START_AUTOSCALER, "restarting the autoscaler, stopped while this operator's Lease lapsed")
    if monitor.exit_code == EXIT_UNSUPPORTED_RAY:
        return Step(Action.UNSUPPORTED_RAY, monitor.error or "the cluster's Ray version is not supported")
    if monitor.exit_code == EXIT_NO_TOKEN_AUTH:
        return Step(Action.NO_TOKEN_AUTH, monitor.error or "the cluster's Ray has no token authentication")
    limit = f"{settings.monitor_memory_limit_mb} MiB"
    if monitor.exit_code == EXIT_OUT_OF_MEMORY:
        return Step(Action.AUTOSCALER_FAILED, f"the autoscaler ran out of memory: over its limit of {limit}")
    if monitor.exit_code == -signal.SIGABRT:  # what Ray's C++ parts do when an allocation fails
        return Step(
            Action.AUTOSCALER_FAILED,
            f"the autoscaler exited with code {monitor.exit_code} (aborted): most likely out of memory, over its "
            f"limit of {limit}",
        )
    if monitor.exit_code is not None:
        error = f": {monitor.error}" if monitor.error else ""
        return Step(Action.AUTOSCALER_FAILED, f"the autoscaler exited with code {monitor.exit_code}{error}")
    stall = settings.stall_seconds
    if monitor.running_seconds > stall and monitor.silent_seconds > stall:
        silent, starved = monitor.silent_seconds, monitor.starved_seconds
        waited = f" (it waited {starved:.0f}s of them for a CPU)"
        if starved < STARVED_SHARE * silent:
            return Step(Action.AUTOSCALER_FAILED, f"the autoscaler made no progress for {silent:.0f}s")
        if silent > STARVED_STALL_FACTOR * stall:
            return Step(
                Action.AUTOSCALER_FAILED, f"the autoscaler made no progress for {silent:.0f}s{waited}: starved too long"
            )
        return Step(
            Action.AUTOSCALER_STARVED,
            f"the autoscaler's last round was {silent:.0f}s ago{waited}: starved of CPU, not hung; restarted only "
            f"past {STARVED_STALL_FACTOR * stall:.0f}s",
        )
    if not monitor.made_a_round:
        return Step(Action.WAIT_FIRST_ROUND, "waiting for the autoscaler's first round")
    if obs.memory.phase != RUNNING and not (obs.autoscaler or {}).get("usage"):
        # The GCS answers before the head's raylet has registered with it, which `ray start` waits for (30 s) and
        # an overloaded node may not bring: a cluster is Running, and its head no longer starting, once it has.
        return Step(Action.WAIT_FIRST_ROUND, "waiting for the head's Ray node to join the cluster")
    if obs.outdated_workers:
        return Step(Action.REPLACE_WORKERS, f"replacing {obs.outdated_workers} workers of changed podTypes")
    if not monitor.round_since_config:
        return Step(Action.APPLY_SPEC, "applying the new spec")
    return Step(Action.RUN, "")


def recheck_seconds(step: Step, obs: Observation, settings: Settings) -> float | None:
    """When the cluster must be looked at again though nothing the operator watches changes (only time shows it:
    a backoff's end, the GCS answering, the autoscaler's rounds and health); None: on a change alone (and the slow
    resync). An autoscaler's exit wakes its cluster too (ClusterManager)."""
    action = step.action
    if action is Action.CLAIM:
        return 0.0
    if action is Action.FENCED or (action is Action.NOT_OURS and obs.foreign):  # another install's Lease is read
        return settings.owner_check_seconds
    if action in NOT_MINE:  # the replicas' Leases are watched: a change of members wakes every cluster
        return None
    if action in FAILURES:
        return settings.restart_delay(obs.memory.failures_in_a_row + 1, spread=0.0)  # its earliest end
    if action in (Action.WAIT_HEAD_BACKOFF, Action.WAIT_AUTOSCALER_BACKOFF):
        return obs.memory.backoff_seconds
    if action is Action.WAIT_GCS:
        return 1.0
    if action is Action.WAIT_HEAD_SLOT:  # other clusters' pods: their changes do not wake this one
        return HEAD_SLOT_SECONDS
    if action in (Action.START_AUTOSCALER, Action.WAIT_FIRST_ROUND):
        return float(settings.autoscaler_interval_seconds)
    if action in AUTOSCALING or action is Action.AUTOSCALER_STARVED:  # its view and decisions, heartbeat, memory
        return min(settings.autoscaler_status_seconds, settings.stall_seconds)
    return None  # the spec, the pods and the Service are watched


def failure_reason(step: Step, failures_in_a_row: int) -> str:
    """A failure's reason, with how many times in a row it happened."""
    return step.message + (f" ({failures_in_a_row} times in a row)" if failures_in_a_row > 1 else "")


def deleted_with(body: dict[str, Any], pods: list[dict[str, Any]], grace_after: int) -> list[dict[str, Any]]:
    """Of a deleted RayCluster's pods (`body` as last seen), those its operator deletes at once: what the garbage
    collector deletes anyway (the pods the RayCluster still owns; none if it was deleted orphaning them), without
    waiting for the collector (seconds, or up to ~30 s while it learns of a new CRD) with Ray running on. Of the pods
    being deleted already, the workers that drain with a grace longer than `grace_after` (no head is left to drain
    against: they are deleted again with that grace)."""
    metadata = body["metadata"]
    if ORPHAN_FINALIZER in (metadata.get("finalizers") or []):
        return []

    def owned(pod: dict[str, Any]) -> bool:
        return any(o.get("uid") == metadata.get("uid") for o in pod["metadata"].get("ownerReferences") or [])

    def deleted_too_slowly(pod: dict[str, Any]) -> bool:
        grace = pod["metadata"].get("deletionGracePeriodSeconds")
        return drain_seconds(pod) > 0 and (grace is None or grace > grace_after)

    return [p for p in pods if owned(p) and (not p["metadata"].get("deletionTimestamp") or deleted_too_slowly(p))]
