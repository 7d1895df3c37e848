"""Where the Ray autoscaler's scale-down stops losing work: an idle worker is drained before its pod is deleted.

Ray's v1 `StandardAutoscaler` "drains" the nodes it removes with the GCS's old DrainNodes call, which de-registers
and stops their raylets at once: a task that landed on an idle node between the idle decision and the delete dies
with it. `DrainingAutoscaler` replaces that call, nothing else of the autoscaler:

- a node removed for being idle is drained with the idle-termination reason (the GCS DrainNode RPC, as Ray's
  autoscaler v2 does): the GCS rejects the drain of a node that took work in the meantime, and that node stays
  (its removal is taken back: Ray's event summary says "Drain rejected", the operator's DrainRejected Event);
- a node removed for any other reason (outdated by a podType change, over maxWorkers, a podType removed) is not
  stopped here: its pod is deleted and its container drains it (autoscaler_bridge.drain_on_term), so its running
  work finishes within the podType's drainTimeoutSeconds;
- an outdated node running Ray is replaced rather than removed: held until a new-template node stands in for it,
  new-template nodes launched first where maxWorkers leaves room, and no launch of its podType past maxWorkers
  while its outdated nodes drain (autoscaler_bridge.rollout decides);
- a podType with drainTimeoutSeconds 0 keeps Ray's own behaviour.

It also labels each worker whose Ray node has joined (JOINED_TAG), once: the operator's bound on Ray pods starting
at once on a node counts a worker until then (autoscaler_bridge.start_gate).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from ray.autoscaler._private.autoscaler import StandardAutoscaler
from ray.autoscaler.tags import TAG_RAY_USER_NODE_TYPE

from autoscaler_bridge.drain_on_term import drain_node
from autoscaler_bridge.names import JOINED_TAG
from autoscaler_bridge.ray_pod import pod_type_drain_seconds
from autoscaler_bridge.rollout import REPLACEMENT, Rollout, rollout_step

log = logging.getLogger(__name__)

IDLE, OUTDATED = "idle", "outdated"  # StandardAutoscaler's reasons for removing an idle node, an outdated one
DRAIN_RPC_SECONDS = 5.0
IDLE_TERMINATION = "DRAIN_NODE_REASON_IDLE_TERMINATION"


def removal_template(node_type: str, reason: str) -> str:
    """The key of StandardAutoscaler's event summary for removing nodes of a type, as it writes it."""
    return "Removing {} nodes of type " + node_type + f" ({reason})."


def rejected_template(node_type: str) -> str:
    """The event summary of idle nodes kept because their drain was rejected (the DrainRejected Event)."""
    return "Drain rejected: kept {} idle nodes of type " + node_type + " that took work again."


def take_back_removal(events: dict[str, Any], node_type: str) -> None:
    """A removal the event summary counted that did not happen: one fewer, the rejection one more."""
    removed = removal_template(node_type, IDLE)
    if events.get(removed, 0) > 1:
        events[removed] -= 1
    else:
        events.pop(removed, None)
    rejected = rejected_template(node_type)
    events[rejected] = events.get(rejected, 0) + 1


class DrainingAutoscaler(StandardAutoscaler):  # type: ignore[misc]  # Ray's class has no type hints
    """StandardAutoscaler whose removal of idle nodes asks the GCS first and whose outdated nodes are replaced
    before they go. Set as the class of the Monitor's autoscaler once it is made (ray_operator.monitor_process); it
    adds no state of its own but what the current round decided (the reasons of its removals, the outdated nodes
    held, the room left to podTypes being replaced)."""

    def terminate_nodes_to_enforce_config_constraints(self, now: float) -> None:
        self.__dict__["_held"] = []
        try:
            super().terminate_nodes_to_enforce_config_constraints(now)
        finally:
            held: list[str] = self.__dict__.pop("_held")
        self._replace_outdated(held)

    def schedule_node_termination(self, node_id: str, reason_opt: str | None, logger_method: Any) -> None:
        held = self.__dict__.get("_held")
        if held is not None and reason_opt == OUTDATED and self._runs_ray(node_id):
            held.append(node_id)
            return
        self.__dict__.setdefault("_removal_reasons", {})[node_id] = reason_opt
        super().schedule_node_termination(node_id, reason_opt, logger_method)

    def launch_required_nodes(self, to_launch: dict[str, int]) -> None:
        """Ray's launches, none past the room of a podType whose outdated nodes are being replaced; first, the
        workers that joined since the last round labelled so (every round launches, if only nothing)."""
        self._label_joined()
        room: dict[str, int] = self.__dict__.get("_rollout_room", {})
        allowed = {t: min(n, room.get(t, n)) for t, n in to_launch.items()}
        super().launch_required_nodes({t: n for t, n in allowed.items() if n > 0})

    def _joined(self, node: str) -> bool:
        """Whether the node's Ray node has joined the cluster: the GCS reports it (its IP is in the load metrics)."""
        provider: Any = self.provider
        return provider.internal_ip(node) in self.load_metrics.node_id_by_ip

    def _label_joined(self) -> None:
        provider: Any = self.provider
        nodes: Any = self.non_terminated_nodes
        for node in nodes.worker_ids:
            if JOINED_TAG in provider.node_tags(node) or not self._joined(node):
                continue
            try:
                provider.set_node_tags(node, {JOINED_TAG: "true"})
            except Exception as error:  # noqa: BLE001 - the next round tries again; until then it counts as starting
                log.warning("labelling node %s as joined failed: %s", node, error)

    def _runs_ray(self, node: str) -> bool:
        """Whether a node has joined the cluster and is of a podType that drains (its work would be lost)."""
        provider: Any = self.provider
        node_type = provider.node_tags(node).get(TAG_RAY_USER_NODE_TYPE, "")
        return self._joined(node) and pod_type_drain_seconds(self.config, node_type) > 0

    def _replace_outdated(self, held: list[str]) -> None:
        """Release the outdated nodes held this round that may go, launch their replacements, and keep the room of
        their podTypes for Ray's own launches (autoscaler_bridge.rollout)."""
        provider: Any = self.provider
        nodes: Any = self.non_terminated_nodes

        def type_of(node: str) -> str:
            return str(provider.node_tags(node).get(TAG_RAY_USER_NODE_TYPE, ""))

        terminating = {n: type_of(n) for n in provider.terminating_workers()}
        if not held and not terminating:  # no podType being replaced: nothing to count (the common round)
            self.__dict__["_rollout_room"] = {}
            return
        listed = {n: type_of(n) for n in nodes.worker_ids}
        types = {listed[n] for n in held} | {t for n, t in terminating.items() if not self.launch_config_ok(n)}
        pending: dict[str, int] = self.pending_launches.breakdown()
        listed_count, terminating_count = Counter(listed.values()), Counter(terminating.values())
        cluster_room = self.config["max_workers"] - len(listed) - len(terminating) - sum(pending.values())
        rooms = {}
        for node_type in sorted(types & set(self.available_node_types)):
            current = [n for n, t in listed.items() if t == node_type and self.launch_config_ok(n)]
            joined = [n for n in current if self._joined(n)]
            taken = listed_count[node_type] + terminating_count[node_type] + pending.get(node_type, 0)
            room = min(cluster_room, self.available_node_types[node_type].get("max_workers", 0) - taken)
            step = rollout_step(
                Rollout(
                    held=tuple(n for n in held if listed[n] == node_type),
                    spare=tuple(n for n in joined if REPLACEMENT not in provider.node_tags(n)),
                    starting=len(current) - len(joined) + pending.get(node_type, 0),
                    deleting=terminating_count[node_type],
                    room=room,
                )
            )
            for outdated, spare in step.released:
                if spare is not None:
                    provider.set_node_tags(spare, {REPLACEMENT: "true"})
                self.schedule_node_termination(outdated, OUTDATED, log.info)
            if step.launch:
                log.info("launching %d %s nodes to replace outdated ones before they go", step.launch, node_type)
                self.launch_new_node(step.launch, node_type)
            rooms[node_type] = room - step.launch
            cluster_room -= step.launch
        self.__dict__["_rollout_room"] = rooms
        self.terminate_scheduled_nodes()

    def drain_nodes_via_gcs(self, provider_node_ids_to_drain: list[str]) -> None:
        reasons: dict[str, str | None] = self.__dict__.pop("_removal_reasons", {})
        provider: Any = self.provider
        ray_drained = []
        for node in list(provider_node_ids_to_drain):
            node_type = provider.node_tags(node).get(TAG_RAY_USER_NODE_TYPE, "")
            seconds = pod_type_drain_seconds(self.config, node_type)  # what the node's container drains for
            if seconds <= 0:
                ray_drained.append(node)
            elif reasons.get(node) == IDLE and not self._idle_drain_accepted(node, node_type, seconds):
                self.nodes_to_terminate.remove(node)
        if ray_drained:
            super().drain_nodes_via_gcs(ray_drained)

    def _idle_drain_accepted(self, node: str, node_type: str, seconds: float) -> bool:
        """Whether the GCS drained an idle node (or it is no Ray node, or the GCS could not say: it goes)."""
        provider: Any = self.provider
        ray_node = self.load_metrics.node_id_by_ip.get(provider.internal_ip(node))
        if ray_node is None:
            return True
        try:
            accepted, why = drain_node(
                self.gcs_client,
                ray_node.hex() if isinstance(ray_node, bytes) else ray_node,
                IDLE_TERMINATION,
                "idle: the autoscaler removes it",
                int((time.time() + seconds) * 1000),
                DRAIN_RPC_SECONDS,
            )
        except Exception as error:  # noqa: BLE001 - the node may be gone already: its pod goes as Ray decided
            log.warning("draining idle node %s failed (it is removed anyway): %s", node, error)
            return True
        if accepted:
            return True
        log.info("kept idle node %s of type %s: its drain was rejected (%s)", node, node_type, why)
        with self.event_summarizer.lock:
            take_back_removal(self.event_summarizer.events_by_key, node_type)
        return False
