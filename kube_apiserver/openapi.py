"""OpenAPI v3 documents, as much of them as clients read.

kubectl reads `/openapi/v3` to learn, per group-version, whether PATCH takes
the `fieldValidation` query parameter; when it does, kubectl leaves schema
validation to the server (`fieldValidation=Strict`), which is what this server
does for custom resources. Custom resources' schemas are published as
components, for `kubectl explain`. Built-in types' schemas are not published.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from kube_apiserver.registry import ResourceType

_PATCH_PARAMETERS = [
    {"name": name, "in": "query", "schema": {"type": "string"}}
    for name in ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")
]


def group_version_path(resource_type: ResourceType) -> str:
    return (
        f"apis/{resource_type.group}/{resource_type.version}" if resource_type.group else f"api/{resource_type.version}"
    )


def _schema_name(resource_type: ResourceType) -> str:
    reversed_group = ".".join(reversed(resource_type.group.split("."))) if resource_type.group else "io.k8s.api.core"
    return f"{reversed_group}.{resource_type.version}.{resource_type.kind}"


def document(types: Iterable[ResourceType]) -> dict[str, Any]:
    """The OpenAPI v3 document of one group-version."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for resource_type in types:
        gvk = {"group": resource_type.group, "version": resource_type.version, "kind": resource_type.kind}
        base = "/" + group_version_path(resource_type)
        if resource_type.namespaced:
            base += "/namespaces/{namespace}"
        item = f"{base}/{resource_type.plural}/{{name}}"
        operation = {
            "x-kubernetes-group-version-kind": gvk,
            "parameters": _PATCH_PARAMETERS,
            "responses": {"200": {"description": "OK"}},
        }
        paths[item] = {
            "get": {"x-kubernetes-group-version-kind": gvk, "responses": {"200": {"description": "OK"}}},
            "patch": operation,
            "put": operation,
        }
        if resource_type.schema:
            schemas[_schema_name(resource_type)] = {**resource_type.schema, "x-kubernetes-group-version-kind": [gvk]}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.35.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def root(types: Iterable[ResourceType]) -> dict[str, Any]:
    """`/openapi/v3`: each group-version's document URL, with a hash that changes with its content."""
    by_group_version: dict[str, list[ResourceType]] = {}
    for resource_type in types:
        by_group_version.setdefault(group_version_path(resource_type), []).append(resource_type)
    paths = {}
    for path, members in sorted(by_group_version.items()):
        digest = hashlib.sha256(json.dumps(document(members), sort_keys=True).encode()).hexdigest()[:32].upper()
        paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}
