"""Where a RayCluster's status is computed: a pure function of one observation and the step decided on it
(ray_operator.decide). ray_operator.status writes it, once per reconciliation, and only what changed.

- phase: Error for an invalid spec or an unsupported Ray; AutoscalingExceptionRecovery on a failure and until the
  cluster runs again (the message then leads with the failure, how many times in a row, then what is awaited);
  Running once the autoscaler makes its rounds on the current spec; Updating otherwise;
- conditions HeadReady and AutoscalerHealthy, each with a reason and a message, for `kubectl describe`;
- per podType counts, and why no more of a podType are launched while its pods are Pending;
- status.autoscaler, the autoscaler's view, when it changed (a busy cluster's at most every
  `autoscaler_status_seconds`: its usage changes every round).
"""

from __future__ import annotations

from typing import Any

from ray.autoscaler.tags import TAG_RAY_USER_NODE_TYPE

from autoscaler_bridge.drain_on_term import EXIT_DEADLINE
from autoscaler_bridge.node_provider import pending_pods_block
from ray_operator.decide import AUTOSCALING, ERRORS, FAILURES, NOT_MINE, Action, Step, failure_reason
from ray_operator.observation import Observation, drain_seconds, draining, pod_phase, pod_ready, stopped
from ray_operator.settings import Settings
from ray_operator.status import ERROR, RECOVERING, RUNNING, UPDATING

_AUTOSCALER_NOT_HEALTHY = {  # the AutoscalerHealthy reason while the step is taken (its message says more)
    Action.START_AUTOSCALER: "Starting",
    Action.WAIT_FIRST_ROUND: "Starting",
    Action.AUTOSCALER_FAILED: "Failed",
    Action.AUTOSCALER_STARVED: "Starved",
}


def status_for(obs: Observation, step: Step, settings: Settings) -> dict[str, Any] | None:
    """The status fields the step leaves the cluster with; None: nothing to write."""
    memory = obs.memory
    if step.action is Action.HOLD or step.action in NOT_MINE:  # a status is its owner's to write
        return None
    if step.action in ERRORS:
        return {"phase": ERROR, "message": step.message, "observedGeneration": obs.generation}
    fields: dict[str, Any] = {
        "observedGeneration": obs.generation,
        **pod_counts(obs, settings),
        "rayAuthentication": obs.auth,
        "conditions": conditions(obs, step),
    }
    if obs.head is not None:
        fields["headPodIP"] = obs.head_ip
    if step.action in FAILURES:
        fields.update(
            phase=RECOVERING,
            autoscalerRetries=memory.retries + 1,
            message=failure_reason(step, memory.failures_in_a_row + 1),
        )
    elif step.action in AUTOSCALING:
        autoscaler = memory.autoscaler
        if (
            obs.autoscaler is not None
            and obs.autoscaler != autoscaler
            and (autoscaler is None or memory.autoscaler_due)
        ):
            fields["autoscaler"] = autoscaler = obs.autoscaler
        # Running, but with demand no podType can hold: the message says so.
        message = step.message or (autoscaler or {}).get("message", "")
        fields.update(phase=RUNNING if step.action is Action.RUN else UPDATING, message=message)
    elif step.action is Action.AUTOSCALER_STARVED:  # no failure: the phase stays what it was
        fields.update(phase=memory.phase or UPDATING, message=step.message)
    elif memory.recovering:
        fields.update(phase=RECOVERING, message=f"{memory.failure}; {step.message}")
    else:
        fields.update(phase=UPDATING, message=step.message)
    return fields


def conditions(obs: Observation, step: Step) -> list[dict[str, Any]]:
    """HeadReady from the head pod and its GCS; AutoscalerHealthy from the step."""
    head = obs.head
    if head is None:
        head_ready = (False, "NoHeadPod", "the cluster has no head pod")
    elif stopped(head):
        head_ready = (False, "HeadPodStopped", f"the head pod {obs.head_name} is {pod_phase(head)}")
    elif pod_phase(head) != "Running" or not obs.head_ip:
        head_ready = (False, "HeadPodStarting", f"the head pod {obs.head_name} is {pod_phase(head)}")
    elif not obs.gcs_answers:
        head_ready = (False, "GCSNotAnswering", f"Ray's GCS on the head pod does not answer at {obs.gcs_address}")
    else:
        head_ready = (True, "GCSAnswers", f"Ray's GCS answers at {obs.gcs_address}")
    if step.action in AUTOSCALING:
        autoscaler = (True, "Running", "the autoscaler makes its rounds")
    elif step.action is Action.WAIT_AUTOSCALER_BACKOFF:
        autoscaler = (False, "RestartBackoff", f"{obs.memory.failure}; {step.message}")
    elif step.action in _AUTOSCALER_NOT_HEALTHY:
        autoscaler = (False, _AUTOSCALER_NOT_HEALTHY[step.action], step.message)
    else:
        autoscaler = (False, "WaitingForHead", "the autoscaler starts once the head's GCS answers")
    return [_condition("HeadReady", *head_ready), _condition("AutoscalerHealthy", *autoscaler)]


def _condition(kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message}


DRAINING, DEADLINE_EXCEEDED = "Draining", "DrainDeadlineExceeded"  # Event reasons


def pod_counts(obs: Observation, settings: Settings) -> dict[str, Any]:
    """Per podType: workers desired (made), ready, Pending and draining, and why no more are launched, if none are."""
    per_type = []
    workers = obs.workers
    for type_name in (obs.config or {}).get("available_node_types", {}):
        mine = [w for w in workers if _pod_type(w) == type_name]
        entry: dict[str, Any] = {
            "name": type_name,
            "desired": len(mine),
            "ready": sum(pod_ready(w) for w in mine),
            "pending": sum(pod_phase(w) == "Pending" for w in mine),
            "draining": sum(_pod_type(w) == type_name for w in obs.draining),
        }
        if obs.now is not None:
            blocked = pending_pods_block(mine, settings.max_pending_pods, settings.pending_timeout_seconds, obs.now)
            if blocked:
                entry["message"] = blocked
        per_type.append(entry)
    return {
        "podTypes": per_type,
        "desiredWorkers": len(workers),
        "readyWorkers": sum(pod_ready(w) for w in workers),
        "drainingWorkers": len(obs.draining),
    }


def _pod_type(pod: dict[str, Any]) -> str:
    return (pod["metadata"].get("labels") or {}).get(TAG_RAY_USER_NODE_TYPE, "")


def drain_events(obs: Observation, said: frozenset[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """The drain Events (reason, pod name, message) not yet `said` of the cluster's deleted workers: Draining once a
    worker drains; DrainDeadlineExceeded (a Warning) once one stopped with work still running at its deadline, named
    by its Ray container's last log line."""
    events = []
    for worker in obs.deleted_workers:
        name = worker["metadata"]["name"]
        if draining(worker) and (DRAINING, name) not in said:
            pod_type = _pod_type(worker)
            message = (
                f"worker pod {name} ({pod_type}) was deleted and drains: it takes no new work, and Ray stops once "
                f"its running work is done, at most {drain_seconds(worker)}s (drainTimeoutSeconds)"
            )
            events.append((DRAINING, name, message))
        for container in (worker.get("status") or {}).get("containerStatuses") or []:
            ended = (container.get("state") or {}).get("terminated") or {}
            if ended.get("exitCode") == EXIT_DEADLINE and (DEADLINE_EXCEEDED, name) not in said:
                last = (ended.get("message") or "").strip().splitlines()[-1:] or ["its log says no more"]
                events.append((DEADLINE_EXCEEDED, name, f"worker pod {name} stopped at its drain deadline: {last[0]}"))
    return events
