"""PATCH bodies applied to an object: JSON merge patch, JSON patch, strategic merge patch.

Strategic merge patch follows the Kubernetes rules for the lists operators
touch: lists of objects with a patch merge key (containers and volumes by
name, env by name, volumeMounts by mountPath, container ports by
containerPort, Service ports by port, ownerReferences by uid, conditions by
type) are merged item by item, `$patch: delete` removes an item, finalizers
merge as a set, and every other list is replaced. A custom resource has no
patch metadata, so the real server refuses strategic merge patches for it
(415), as this one does.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
    "conditions": "type",
    "hostAliases": "ip",
}
_SET_LISTS = {"finalizers"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch; raises ValueError when an operation cannot apply."""
    try:
        return jsonpatch.apply_patch(target, operations)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as error:
        raise ValueError(str(error)) from None


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":
        return "containerPort" if any(isinstance(i, dict) and "containerPort" in i for i in items) else "port"
    return _MERGE_KEYS.get(field)


def _in_kubernetes_order(merged: list[Any], patch_order: list[Any], original: list[Any], identity: Any) -> list[Any]:
    """The order kube-apiserver gives a merged list (strategicpatch's normalizeElementOrder): the patch's items in
    the patch's order, with each item only the original had placed before the first patch item that follows it in
    the original; an item the original did not have goes first."""
    in_patch = {identity(item): n for n, item in enumerate(patch_order)}
    server = {identity(item): n for n, item in enumerate(original)}
    patched = sorted((m for m in merged if identity(m) in in_patch), key=lambda m: in_patch[identity(m)])
    server_only = sorted(
        (m for m in merged if identity(m) not in in_patch), key=lambda m: server.get(identity(m), len(server))
    )
    result: list[Any] = []
    while server_only or patched:
        left = server.get(identity(server_only[0])) if server_only else None
        right = server.get(identity(patched[0])) if patched else None
        take_left = not patched or (server_only and left is not None and right is not None and left < right)
        result.append((server_only if take_left else patched).pop(0))
    return result


def _merge_list(field: str, current: list[Any], patch: list[Any], order: list[Any] | None) -> list[Any]:
    """`order`: the patch's `$setElementOrder/<field>`, when it has one."""
    if field in _SET_LISTS:
        merged = current + [item for item in patch if item not in current]
        return _in_kubernetes_order(merged, order or patch, current, lambda item: item)
    key = _merge_key(field, current + patch)
    if key is None or not all(isinstance(i, dict) for i in patch):
        return [strategic_merge_patch(None, i) if isinstance(i, dict) else i for i in patch]
    result = copy.deepcopy(current)
    for item in patch:
        if item.get("$patch") == "replace":
            return [strategic_merge_patch(None, i) for i in patch if i.get("$patch") != "replace"]
        index = next((n for n, c in enumerate(result) if isinstance(c, dict) and c.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(strategic_merge_patch(None, item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return _in_kubernetes_order(
        result,
        order or [i for i in patch if i.get("$patch") != "delete"],
        current,
        lambda item: item.get(key) if isinstance(item, dict) else item,
    )


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Kubernetes strategic merge patch, for the built-in types."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$retainKeys", "$patch"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [v for v in result.get(field, []) if v not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            current = result.get(key) if isinstance(result.get(key), list) else []
            result[key] = _merge_list(key, current, value, patch.get(f"$setElementOrder/{key}"))
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    return result


def apply_patch(target: Any, applied: Any) -> Any:
    """Server-side apply, approximated: the applied configuration merged over the object.

    Fields are merged as a strategic merge patch without deletions; fields that
    a manager applied earlier and left out now are not removed (the real server
    tracks field ownership in managedFields and removes them).
    """
    return strategic_merge_patch(target, applied)
