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
- a podType with drainTimeoutSeconds 0 keeps Ray's own behaviour.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ray.autoscaler._private.autoscaler import StandardAutoscaler
from ray.autoscaler.tags import TAG_RAY_USER_NODE_TYPE

from autoscaler_bridge.ray_pod import pod_type_drain_seconds

log = logging.getLogger(__name__)

IDLE = "idle"  # StandardAutoscaler's reason for removing an idle node
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
    """StandardAutoscaler whose removal of idle nodes asks the GCS first. Set as the class of the Monitor's
    autoscaler once it is made (ray_operator.monitor_process); it adds no state of its own but the reasons of the
    removals scheduled in the current round."""

    def schedule_node_termination(self, node_id: str, reason_opt: str | None, logger_method: Any) -> None:
        self.__dict__.setdefault("_removal_reasons", {})[node_id] = reason_opt
        super().schedule_node_termination(node_id, reason_opt, logger_method)

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
        from ray.core.generated import autoscaler_pb2

        provider: Any = self.provider
        ray_node = self.load_metrics.node_id_by_ip.get(provider.internal_ip(node))
        if ray_node is None:
            return True
        try:
            accepted, why = self.gcs_client.drain_node(
                ray_node.hex() if isinstance(ray_node, bytes) else ray_node,
                autoscaler_pb2.DrainNodeReason.Value(IDLE_TERMINATION),  # type: ignore[attr-defined]
                "idle: the autoscaler removes it",
                int((time.time() + seconds) * 1000),
                timeout=DRAIN_RPC_SECONDS,
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
