"""Built-in objects against the real Kubernetes JSON schemas, as packaged by `kubernetes-validate`.

What the real server does with a built-in object, and how it says so:
- a field of the wrong type fails decoding: 400 BadRequest, `<Kind> in version "v1" cannot be handled as a <Kind>`;
- a required field that is missing: 422 Invalid with the field's path;
- a field the type does not have is dropped (or refused / warned about, per `fieldValidation`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from kubernetes_validate.utils import schema_contents
from referencing import Registry, Resource

SCHEMA_VERSION = "1.35"
# metav1.MicroTime fields, which the real server decodes with exactly six fractional digits (the schemas say only
# "date-time").
MICRO_TIME_FIELDS = {
    "Event": (("eventTime",), ("series", "lastObservedTime")),
    "Lease": (("spec", "acquireTime"), ("spec", "renewTime")),
}
_MICRO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$")
# resource.Quantity as kube-apiserver decodes it (its error message quotes a looser expression).
_QUANTITY = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
QUANTITY_ERROR = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


@dataclass
class Findings:
    type_errors: list[str] = field(default_factory=list)
    causes: list[dict[str, str]] = field(default_factory=list)
    unknown: list[list[Any]] = field(default_factory=list)


def _schema_dir(strict: bool) -> str:
    return f"v{SCHEMA_VERSION}.0-local" + ("-strict" if strict else "")


@functools.cache
def _validator(kind: str, api_version: str) -> jsonschema.protocols.Validator | None:
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    directory = _schema_dir(strict=True)
    try:
        schema = schema_contents(
            f"kubernetes-json-schema/{directory}/{kind.lower()}-{group_version}.json", SCHEMA_VERSION
        )
    except FileNotFoundError:
        return None
    definitions = schema_contents(f"kubernetes-json-schema/{directory}/_definitions.json", SCHEMA_VERSION)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def _path(parts: list[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The most specific errors under a oneOf/anyOf (e.g. int-or-string) or a $ref."""
    if error.context:
        return [leaf for sub in error.context for leaf in _leaves(sub)]
    return [error]


def _decode_errors(obj: dict[str, Any]) -> list[str]:
    """What the real server fails to decode beyond JSON types: MicroTimes and a pod's resource quantities."""
    errors = []
    if obj.get("kind") == "Pod":
        spec = obj.get("spec") or {}
        for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            resources = container.get("resources") or {} if isinstance(container, dict) else {}
            for values in (resources.get("limits") or {}, resources.get("requests") or {}):
                if any(isinstance(v, str) and not _QUANTITY.match(v) for v in values.values()):
                    errors.append(QUANTITY_ERROR)
    for path in MICRO_TIME_FIELDS.get(obj.get("kind", ""), ()):
        value: Any = obj
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str) and not _MICRO_TIME.match(value):
            errors.append(f'parsing time "{value}" as "2006-01-02T15:04:05.000000Z07:00"')
    return errors


def check(obj: dict[str, Any]) -> Findings:
    findings = Findings(type_errors=list(dict.fromkeys(_decode_errors(obj))))
    validator = _validator(obj.get("kind", ""), obj.get("apiVersion", ""))
    if validator is None:
        return findings
    for error in validator.iter_errors(obj):
        where = list(error.absolute_path)
        if error.validator == "additionalProperties":
            known = set(error.schema.get("properties") or {})
            for name in error.instance:
                if name not in known:
                    findings.unknown.append(where + [name])
        elif error.validator == "required":
            name = re.match(r"'([^']+)' is a required property", error.message)
            path = _path(where + [name.group(1) if name else "?"])
            findings.causes.append(
                {"reason": "FieldValueRequired", "field": path, "message": f"{path}: Required value"}
            )
        elif error.validator in ("type", "oneOf", "anyOf", "format"):
            leaf = _leaves(error)[0]
            path = _path(list(leaf.absolute_path))
            findings.type_errors.append(
                f"json: cannot unmarshal {type(leaf.instance).__name__} into field {path}: {leaf.message}"
            )
        else:
            path = _path(where)
            findings.causes.append(
                {"reason": "FieldValueInvalid", "field": path, "message": f"{path}: Invalid value: {error.message}"}
            )
    return findings


def remove(obj: dict[str, Any], path: list[Any]) -> None:
    target: Any = obj
    for part in path[:-1]:
        target = target[part]
    target.pop(path[-1], None)


def path_text(path: list[Any]) -> str:
    return _path(path)
