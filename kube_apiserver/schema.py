"""A custom resource against its CRD's structural openAPIV3Schema: defaulting, pruning, validation.

As the real API server does, in this order: `default`s are filled in, fields
the schema does not declare are pruned (dropped silently) unless
`x-kubernetes-preserve-unknown-fields` says otherwise, then the object is
validated — types, enum, required, bounds, lengths, patterns, item counts,
list-type map/set uniqueness — and every violation is reported as a cause
with its field path, in the API server's wording.

CEL rules (`x-kubernetes-validations`) are evaluated next, by cel_rules.py.
"""

from __future__ import annotations

import copy
import re
from typing import Any

_ROOT_FIELDS = ("apiVersion", "kind", "metadata")


def _type_ok(value: Any, expected: str) -> bool:
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "string":
        return isinstance(value, str)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "integer":
        return (
            isinstance(value, int) and not isinstance(value, bool) or (isinstance(value, float) and value.is_integer())
        )
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return True


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(value[name], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in value:
                if name not in (schema.get("properties") or {}):
                    value[name] = apply_defaults(value[name], extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


def prune(value: Any, schema: dict[str, Any], root: bool = False, path: str = "") -> list[str]:
    """Drop the fields the schema does not know (in place); returns their paths."""
    pruned: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields") or extra is True
        embedded = schema.get("x-kubernetes-embedded-resource")
        for name in list(value):
            field = f"{path}.{name}" if path else name
            if root and name in _ROOT_FIELDS:
                continue
            if name in properties:
                pruned += prune(value[name], properties[name], path=field)
            elif isinstance(extra, dict):
                pruned += prune(value[name], extra, path=field)
            elif not keep_unknown and not (embedded and name in _ROOT_FIELDS):
                del value[name]
                pruned.append(field)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            pruned += prune(item, schema["items"], path=f"{path}[{index}]")
    return pruned


def _cause(kind: str, path: str, message: str) -> dict[str, str]:
    reason = {
        "required": "FieldValueRequired",
        "type": "FieldValueTypeInvalid",
        "enum": "FieldValueNotSupported",
        "duplicate": "FieldValueDuplicate",
        "toomany": "FieldValueTooMany",
        "toolong": "FieldValueTooLong",
    }.get(kind, "FieldValueInvalid")
    return {"reason": reason, "field": path, "message": message}


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}.get(
        type(value), "unknown"
    )


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (dict, list)):
        return f'"{type(value).__name__}"'
    return str(value)


def validate(value: Any, schema: dict[str, Any], path: str = "") -> list[dict[str, str]]:
    """Causes (reason, field, message) of every violation of schema by value."""
    causes: list[dict[str, str]] = []
    here = path or "<root>"
    if value is None:
        if not schema.get("nullable"):
            if schema.get("type"):
                causes.append(
                    _cause(
                        "type",
                        here,
                        f'{here}: Invalid value: "null": {here} in body must be of type {schema["type"]}: "null"',
                    )
                )
        return causes
    expected = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))):
            causes.append(
                _cause(
                    "type",
                    here,
                    f'{here}: Invalid value: "{_json_type(value)}": {here} in body must be of type integer,string: '
                    f'"{_json_type(value)}"',
                )
            )
            return causes
    elif expected and not _type_ok(value, expected):
        shown = _json_type(value)
        causes.append(
            _cause(
                "type", here, f'{here}: Invalid value: "{shown}": {here} in body must be of type {expected}: "{shown}"'
            )
        )
        return causes
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(_show(v) for v in schema["enum"])
        causes.append(_cause("enum", here, f"{here}: Unsupported value: {_show(value)}: supported values: {supported}"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema:
            low = schema["minimum"]
            if value < low or (schema.get("exclusiveMinimum") and value == low):
                word = "greater than" if schema.get("exclusiveMinimum") else "greater than or equal to"
                causes.append(
                    _cause(
                        "invalid", here, f"{here}: Invalid value: {_show(value)}: {here} in body should be {word} {low}"
                    )
                )
        if "maximum" in schema:
            high = schema["maximum"]
            if value > high or (schema.get("exclusiveMaximum") and value == high):
                word = "less than" if schema.get("exclusiveMaximum") else "less than or equal to"
                causes.append(
                    _cause(
                        "invalid",
                        here,
                        f"{here}: Invalid value: {_show(value)}: {here} in body should be {word} {high}",
                    )
                )
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            causes.append(
                _cause("toolong", here, f"{here}: Too long: may not be more than {schema['maxLength']} bytes")
            )
        if "minLength" in schema and len(value) < schema["minLength"]:
            causes.append(
                _cause(
                    "invalid",
                    here,
                    f"{here}: Invalid value: {_show(value)}: {here} in body should be at least "
                    f"{schema['minLength']} chars long",
                )
            )
        if "pattern" in schema and not re.search(schema["pattern"], value):
            causes.append(
                _cause(
                    "invalid",
                    here,
                    f"{here}: Invalid value: {_show(value)}: {here} in body should match '{schema['pattern']}'",
                )
            )
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            causes.append(
                _cause("toomany", here, f"{here}: Too many: {len(value)}: must have at most {schema['maxItems']} items")
            )
        if "minItems" in schema and len(value) < schema["minItems"]:
            causes.append(
                _cause(
                    "invalid",
                    here,
                    f"{here}: Invalid value: {len(value)}: {here} in body should have at least "
                    f"{schema['minItems']} items",
                )
            )
        causes += _list_type_causes(value, schema, here)
        if isinstance(schema.get("items"), dict):
            for index, item in enumerate(value):
                causes += validate(item, schema["items"], f"{path}[{index}]")
    if isinstance(value, dict):
        for name in schema.get("required") or []:
            if name not in value:
                field = f"{path}.{name}" if path else name
                causes.append(_cause("required", field, f"{field}: Required value"))
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            causes.append(
                _cause(
                    "toomany",
                    here,
                    f"{here}: Too many: {len(value)}: must have at most {schema['maxProperties']} items",
                )
            )
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            field = f"{path}.{name}" if path else name
            if name in properties:
                causes += validate(item, properties[name], field)
            elif isinstance(extra, dict):
                causes += validate(item, extra, field)
    for sub in schema.get("allOf") or []:
        causes += validate(value, sub, path)
    return causes


def _list_type_causes(value: list[Any], schema: dict[str, Any], here: str) -> list[dict[str, str]]:
    list_type = schema.get("x-kubernetes-list-type")
    causes = []
    if list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                continue
            identity = tuple(item.get(k) for k in keys)
            if identity in seen:
                shown = ",".join(f'"{k}":{_show(item.get(k))}' for k in keys)
                causes.append(
                    _cause(
                        "duplicate",
                        f"{here}[{index}]",
                        f"{here}[{index}]: Duplicate value: map[string]interface {{}}{{{shown}}}",
                    )
                )
            seen.append(identity)
    elif list_type == "set":
        for index, item in enumerate(value):
            if item in value[:index]:
                causes.append(
                    _cause("duplicate", f"{here}[{index}]", f"{here}[{index}]: Duplicate value: {_show(item)}")
                )
    return causes
