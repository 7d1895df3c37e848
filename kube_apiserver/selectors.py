"""Label selectors (equality- and set-based) and field selectors, parsed and matched as Kubernetes does."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Matcher = Callable[[Mapping[str, Any]], bool]

_SET_TERM = re.compile(r"^\s*(\S+?)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQUALITY_TERM = re.compile(r"^\s*([^!=\s]+)\s*(==|=|!=)\s*([^,\s]*)\s*$")
_EXISTS_TERM = re.compile(r"^\s*(!?)([^!=\s()]+)\s*$")

# Fields each kind can be selected by, beyond metadata.name and metadata.namespace.
SELECTABLE_FIELDS = {
    "Pod": {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    },
    "Event": {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
        "regarding.kind",
        "regarding.name",
        "regarding.namespace",
        "regarding.uid",
    },
    "Secret": {"type"},
    "Namespace": {"status.phase"},
    "Node": {"spec.unschedulable"},
}


class SelectorError(ValueError):
    """A selector that does not parse, or names a field that cannot be selected on."""


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    terms, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t for t in terms if t.strip()]


def parse_label_selector(text: str | None) -> Matcher:
    if not text:
        return lambda labels: True
    checks: list[Matcher] = []
    for term in _split_terms(text):
        if match := _SET_TERM.match(term):
            key, op, values = (
                match.group(1),
                match.group(2),
                {v.strip() for v in match.group(3).split(",") if v.strip()},
            )
            if op == "in":
                checks.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                checks.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
        elif match := _EQUALITY_TERM.match(term):
            key, op, value = match.groups()
            if op == "!=":
                checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif match := _EXISTS_TERM.match(term):
            negate, key = match.groups()
            checks.append((lambda labels, k=key: k not in labels) if negate else (lambda labels, k=key: k in labels))
        else:
            raise SelectorError(f"unable to parse requirement: {term.strip()!r}")
    return lambda labels: all(check(labels) for check in checks)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Mapping) and path == "source":
        return value.get("component", "")
    return str(value)


def parse_field_selector(
    text: str | None, kind: str, extra_fields: set[str] | None = None
) -> Callable[[Mapping[str, Any]], bool]:
    if not text:
        return lambda obj: True
    allowed = {"metadata.name", "metadata.namespace"} | SELECTABLE_FIELDS.get(kind, set()) | (extra_fields or set())
    checks = []
    for term in _split_terms(text):
        match = _EQUALITY_TERM.match(term)
        if not match:
            raise SelectorError(f"invalid selector: {term.strip()!r}; can't understand {term.strip()!r}")
        path, op, value = match.groups()
        if path not in allowed:
            if (
                kind in SELECTABLE_FIELDS
            ):  # a kind with field labels of its own says it as kube-apiserver's conversion does
                raise SelectorError(f"field label not supported: {path}")
            known = ", ".join(f'"{name}"' for name in sorted(allowed))
            raise SelectorError(f'"{path}" is not a known field selector: only {known}')
        if op == "!=":
            checks.append(lambda obj, p=path, v=value: field_value(obj, p) != v)
        else:
            checks.append(lambda obj, p=path, v=value: field_value(obj, p) == v)
    return lambda obj: all(check(obj) for check in checks)
