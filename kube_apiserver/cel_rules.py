"""Where a custom resource meets its CRD's CEL rules (`x-kubernetes-validations`), as kube-apiserver evaluates
them: each rule with `self` bound to the value at its schema node, for every value the node matches (list
items, map values), only once the object passed its schema (otherwise one cause says the rules were not
checked). A rule that is false, or fails to evaluate, is a 422 cause at the rule's `fieldPath`. Evaluated with
cel-python; transition rules (those reading `oldSelf`) are not evaluated."""

from __future__ import annotations

import functools
from typing import Any

import celpy

NOT_CHECKED = {
    "reason": "FieldValueInvalid",
    "field": "<nil>",
    "message": "<nil>: Invalid value: null: some validation rules were not checked because the object was "
    "invalid; correct the existing errors to complete validation",
}


@functools.lru_cache(maxsize=256)
def _program(rule: str) -> Any:
    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


def has_rules(schema: dict[str, Any]) -> bool:
    if schema.get("x-kubernetes-validations"):
        return True
    children = list((schema.get("properties") or {}).values())
    children += [sub for sub in (schema.get("items"), schema.get("additionalProperties")) if isinstance(sub, dict)]
    return any(has_rules(child) for child in children)


def _passes(rule: str, value: Any) -> tuple[bool, str]:
    try:
        result = _program(rule).evaluate({"self": celpy.json_to_cel(value)})
    except celpy.CELEvalError as error:  # raised by some evaluation failures, returned by others
        result = error
    if isinstance(result, celpy.CELEvalError):
        return False, f"evaluation error: {result.args[0] if result.args else result}"
    return bool(result), ""


def violations(value: Any, schema: dict[str, Any], path: str) -> list[dict[str, str]]:
    """Causes of every rule `value` breaks, under `schema` at `path` (e.g. `spec`)."""
    if value is None:
        return []
    causes = []
    for rule in schema.get("x-kubernetes-validations") or []:
        if "oldSelf" in rule["rule"]:
            continue
        ok, failure = _passes(rule["rule"], value)
        if not ok:
            field = (path + rule.get("fieldPath", "")).lstrip(".") or "<nil>"  # a rule on the root: no field
            message = failure or rule.get("message") or f"failed rule: {rule['rule']}"
            causes.append(
                {"reason": "FieldValueInvalid", "field": field, "message": f"{field}: Invalid value: {message}"}
            )
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            causes += violations(value.get(name), sub, f"{path}.{name}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name, item in value.items():
                if name not in (schema.get("properties") or {}):
                    causes += violations(item, extra, f"{path}[{name}]")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            causes += violations(item, schema["items"], f"{path}[{index}]")
    return causes
