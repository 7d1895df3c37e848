"""`kubectl get` output: objects as a meta.k8s.io/v1 Table.

Custom resources get a Name column plus their CRD's additionalPrinterColumns
(dates shown as ages, as the real server formats them); pods get the familiar
READY, STATUS, RESTARTS, AGE; every other type Name and Age.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from kube_apiserver.objects import parse_time
from kube_apiserver.registry import ResourceType

_NAME_COLUMN = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": "Name must be unique within a namespace.",
    "priority": 0,
}
_AGE_COLUMN = {
    "name": "Age",
    "type": "date",
    "description": "CreationTimestamp is a timestamp representing the server time when this object was created.",
    "priority": 0,
}


def human_duration(seconds: float) -> str:
    """Kubernetes' duration.HumanDuration."""
    seconds = int(seconds)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    return human_duration((datetime.now(timezone.utc) - parse_time(timestamp)).total_seconds())


_FILTER = re.compile(r"^\[\?\(@\.([\w.]+)\s*==\s*[\"']([^\"']*)[\"']\)\]")
_INDEX = re.compile(r"^\[(\d+)\]")
_FIELD = re.compile(r"^\.([\w-]+)")


def json_path(obj: Any, path: str) -> Any:
    """A printer column's simple JSONPath: `.a.b`, `.a[0].b`, `.a[?(@.type=="Ready")].status`."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    values = [obj]
    while path:
        if match := _FIELD.match(path):
            values = [v.get(match.group(1)) for v in values if isinstance(v, dict)]
        elif match := _INDEX.match(path):
            index = int(match.group(1))
            values = [v[index] for v in values if isinstance(v, list) and len(v) > index]
        elif match := _FILTER.match(path):
            field, wanted = match.groups()
            values = [
                item
                for v in values
                if isinstance(v, list)
                for item in v
                if isinstance(item, dict) and str(json_path(item, "." + field)) == wanted
            ]
        else:
            return None
        path = path[match.end() :]
        values = [v for v in values if v is not None]
    return values[0] if values else None


def _cell(value: Any, column_type: str) -> Any:
    if value is None:
        return None
    if column_type == "date":
        return age(value) if isinstance(value, str) else value
    if column_type == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value)
    return value


def _pod_row(pod: dict[str, Any]) -> list[Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    containers = (pod.get("spec") or {}).get("containers") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(s.get("restartCount", 0) for s in statuses)
    phase = (pod.get("status") or {}).get("phase", "Unknown")
    reason = phase
    for status in statuses:
        waiting = (status.get("state") or {}).get("waiting")
        terminated = (status.get("state") or {}).get("terminated")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated and terminated.get("reason") and phase not in ("Succeeded", "Failed"):
            reason = terminated["reason"]
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return [f"{ready}/{len(containers)}", reason, restarts]


def columns_and_rows(
    resource_type: ResourceType, items: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[list[Any]]]:
    if resource_type.custom and resource_type.printer_columns:
        columns = [dict(_NAME_COLUMN)] + [
            {
                "name": c["name"],
                "type": c.get("type", "string"),
                "format": c.get("format", ""),
                "description": c.get("description", ""),
                "priority": c.get("priority", 0),
            }
            for c in resource_type.printer_columns
        ]
        rows = [
            [item["metadata"]["name"]]
            + [_cell(json_path(item, c["jsonPath"]), c.get("type", "string")) for c in resource_type.printer_columns]
            for item in items
        ]
        return columns, rows
    if resource_type.kind == "Pod" and resource_type.group == "":
        columns = [
            dict(_NAME_COLUMN),
            {
                "name": "Ready",
                "type": "string",
                "format": "",
                "description": "The aggregate readiness state of this pod for accepting traffic.",
                "priority": 0,
            },
            {
                "name": "Status",
                "type": "string",
                "format": "",
                "description": "The aggregate status of the containers in this pod.",
                "priority": 0,
            },
            {
                "name": "Restarts",
                "type": "string",
                "format": "",
                "description": "The number of times the containers in this pod have been restarted.",
                "priority": 0,
            },
            dict(_AGE_COLUMN),
            {
                "name": "IP",
                "type": "string",
                "format": "",
                "description": "IP address allocated to the pod.",
                "priority": 1,
            },
            {
                "name": "Node",
                "type": "string",
                "format": "",
                "description": "Name of the node this pod runs on.",
                "priority": 1,
            },
        ]
        rows = [
            [
                p["metadata"]["name"],
                *_pod_row(p),
                age(p["metadata"].get("creationTimestamp")),
                (p.get("status") or {}).get("podIP") or "<none>",
                (p.get("spec") or {}).get("nodeName") or "<none>",
            ]
            for p in items
        ]
        return columns, rows
    columns = [dict(_NAME_COLUMN), dict(_AGE_COLUMN)]
    return columns, [[i["metadata"]["name"], age(i["metadata"].get("creationTimestamp"))] for i in items]


def table(
    resource_type: ResourceType, items: list[dict[str, Any]], list_metadata: dict[str, Any], include_object: str
) -> dict[str, Any]:
    columns, cells = columns_and_rows(resource_type, items)
    rows = []
    for item, row in zip(items, cells, strict=True):
        entry: dict[str, Any] = {"cells": row}
        if include_object == "Object":
            entry["object"] = item
        elif include_object != "None":
            entry["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": item["metadata"],
            }
        rows.append(entry)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "columnDefinitions": columns,
        "rows": rows,
    }
