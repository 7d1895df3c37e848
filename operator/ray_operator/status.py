"""Where a RayCluster's status is written, and its Events posted.

Status goes through the status subresource as a merge patch, only when it
changed; conditions keep their lastTransitionTime while their status holds.
Events are core/v1 Events about the RayCluster, as `kubectl describe` shows;
one that repeats (same reason, type and message) updates the Event already
made, its count and lastTimestamp, as Kubernetes' own event recorder does, so a
cluster that fails over and over does not flood etcd.
"""

from __future__ import annotations

import copy
import uuid
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from autoscaler_bridge.kube_client import KubeCalls
from autoscaler_bridge.names import API_GROUP, API_VERSION, KIND, PLURAL

UPDATING = "Updating"
RUNNING = "Running"
RECOVERING = "AutoscalingExceptionRecovery"
ERROR = "Error"
COMPONENT = "ray-operator"
_UNREACHABLE = (urllib3.exceptions.HTTPError, OSError)  # the API server, past KubeCalls' retries
MAX_NAME = 253  # of an object's name in Kubernetes (a DNS subdomain)
REMEMBERED_EVENTS = 32  # distinct Events per RayCluster whose repeats update them instead of making new ones


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """New conditions, keeping an old lastTransitionTime where the status did not change."""
    previous = {c["type"]: c for c in old}
    merged = []
    for condition in new:
        before = previous.get(condition["type"])
        stamp = before["lastTransitionTime"] if before and before.get("status") == condition["status"] else now()
        merged.append({**condition, "lastTransitionTime": stamp})
    return merged


def merge_patch_of(old: Any, new: Any) -> Any:
    """What a JSON merge patch must say to turn `old` into `new`: an object's keys that went are sent as null (an
    object in a merge patch is merged into the one stored, not put in its place)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return {**{k: None for k in old if k not in new}, **{k: merge_patch_of(old.get(k), v) for k, v in new.items()}}
    return new


class StatusWriter:
    """Writes one RayCluster's status and Events."""

    def __init__(self, calls: KubeCalls, name: str, namespace: str) -> None:
        self.calls = calls
        self.custom = kubernetes.client.CustomObjectsApi(calls.client)
        self.name, self.namespace = name, namespace
        self.written: dict[str, Any] = {}
        self._events: OrderedDict[tuple[str, str, bool], tuple[str, int]] = OrderedDict()  # -> (Event name, count)

    def adopt(self, status: dict[str, Any] | None) -> None:
        """Start from the status the RayCluster already has (after an operator restart)."""
        self.written = copy.deepcopy(status or {})

    @property
    def current(self) -> dict[str, Any]:
        return self.written

    def write(self, **fields: Any) -> bool:
        """Set these status fields; returns whether anything was written (404: the RayCluster is gone)."""
        if "autoscalerRetries" not in self.written:
            fields.setdefault("autoscalerRetries", 0)  # kubectl's RESTARTS column shows 0, not nothing
        if "conditions" in fields:
            fields["conditions"] = merge_conditions(self.written.get("conditions") or [], fields["conditions"])
        changed = {k: v for k, v in fields.items() if self.written.get(k) != v}
        if not changed:
            return False
        changed["lastUpdateTime"] = now()
        patch = {k: merge_patch_of(self.written.get(k), v) for k, v in changed.items()}
        if self._patch({"status": patch}) is None:
            return False
        self.written.update(changed)
        return True

    def _patch(self, patch: dict[str, Any]) -> Any:
        """A merge patch of the status subresource; the RayCluster as patched, or None when it is gone (404) or
        changed since the resourceVersion the patch names (409)."""
        try:
            return self.calls(
                self.custom.patch_namespaced_custom_object_status,
                API_GROUP,
                API_VERSION,
                self.namespace,
                PLURAL,
                self.name,
                patch,
            )
        except ApiException as error:
            if error.status in (404, 409):
                return None
            raise

    def set_owner(self, body: dict[str, Any], owner: dict[str, str]) -> dict[str, Any] | None:
        """Make `owner` the cluster's status.operator (a claim, or a hand-over), only if the RayCluster is still as
        `body` shows it (its resourceVersion): of two operators claiming at once, one wins. The RayCluster as
        written, or None when it changed meanwhile (or is gone)."""
        claimed = self._patch(
            {"metadata": {"resourceVersion": body["metadata"]["resourceVersion"]}, "status": {"operator": owner}}
        )
        if claimed is not None:
            self.written["operator"] = owner
        return claimed if isinstance(claimed, dict) else None

    def event(self, body: dict[str, Any], reason: str, message: str, warning: bool = False) -> None:
        """Post an Event about the RayCluster, or count one more of the same Event."""
        core = kubernetes.client.CoreV1Api(self.calls.client)
        stamp = now()
        key = (reason, message[:1024], warning)
        seen = self._events.get(key)
        if seen is not None:
            name, count = seen
            try:
                self.calls(
                    core.patch_namespaced_event, name, self.namespace, {"count": count + 1, "lastTimestamp": stamp}
                )
                self._events[key] = (name, count + 1)
                self._events.move_to_end(key)
                return
            except ApiException:
                pass  # gone (Events expire): a new one is made
            except _UNREACHABLE:
                return  # an Event is a courtesy: its loss must not stop the cluster's reconciliation
        metadata = body["metadata"]
        name = f"{self.name[: MAX_NAME - 17]}.{uuid.uuid4().hex[:16]}"  # a name of any length makes one that fits
        event = {
            "metadata": {"name": name, "namespace": self.namespace},
            "involvedObject": {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": KIND,
                "name": self.name,
                "namespace": self.namespace,
                "uid": metadata.get("uid"),
                "resourceVersion": metadata.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self.calls(core.create_namespaced_event, self.namespace, event)
        except (ApiException, *_UNREACHABLE):
            return  # an Event is a courtesy: its loss must not stop the cluster's reconciliation
        self._events[key] = (name, 1)
        if len(self._events) > REMEMBERED_EVENTS:
            self._events.popitem(last=False)
