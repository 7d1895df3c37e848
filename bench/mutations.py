"""Where hostile RayClusters come from: seeded mutations of an example RayCluster, drawn from the CRD's schema (each
node's type, bounds, enums, lengths) and from what Kubernetes and YAML let through (huge and non-finite numbers,
enormous exponents, wrong shapes, odd unicode, long names, deep nesting), as Acto mutates custom resources.

Pure: the same seed gives the same mutations. `bench.fuzz` applies them on a real control plane; a unit test runs
the operator's derivation on them.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

ODD_NUMBERS: list[Any] = [
    -1,
    0,
    2**31,
    2**63,
    2**64,
    10**40,
    1e308,
    float("inf"),
    float("-inf"),
    float("nan"),
    0.5,
    True,
]
ODD_STRINGS: list[Any] = [
    "",
    "1e1000000",
    "1e2147483647",
    "1e99999999999",
    "-1",
    "Infinity",
    "NaN",
    "0x10",
    "1Qi",
    "8Ei",
    "9223372036854775808",
    "Not_A_DNS_Label",
    "Ω🚀\u202e",
    "a\u0000b",
    "x" * 300,
    "7" * 5000,
]
ODD_SHAPES: list[Any] = [None, [], {}, [1, "a", None], {"k": {"k": {"k": []}}}, "FOO=bar"]
QUANTITY_PATHS = ("limits", "requests")


@dataclass(frozen=True)
class Mutation:
    path: str  # where, as "spec.podTypes[1].maxWorkers"
    what: str  # e.g. "set 1e1000000", "delete", "nest 500"
    raycluster: dict[str, Any]


def _nodes(
    value: Any, schema: dict[str, Any] | None, path: tuple[Any, ...] = ()
) -> Iterator[tuple[tuple[Any, ...], Any, dict[str, Any] | None]]:
    """Every node of the object with the schema node that covers it (None under preserve-unknown fields)."""
    yield path, value, schema
    properties = (schema or {}).get("properties") or {}
    extra = (schema or {}).get("additionalProperties")
    if isinstance(value, dict):
        for key, child in value.items():
            sub = properties.get(key) if key in properties else (extra if isinstance(extra, dict) else None)
            yield from _nodes(child, sub, (*path, key))
    elif isinstance(value, list):
        items = (schema or {}).get("items")
        for index, child in enumerate(value):
            yield from _nodes(child, items if isinstance(items, dict) else None, (*path, index))


def _show(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


def _odd_values(schema: dict[str, Any] | None, rng: random.Random) -> list[tuple[str, Any]]:
    """Values the schema node's bounds and type invite, then odd ones of every kind."""
    found: list[tuple[str, Any]] = []
    schema = schema or {}
    if "maximum" in schema:
        found.append(("over maximum", schema["maximum"] + 1))
    if "minimum" in schema:
        found.append(("under minimum", schema["minimum"] - 1))
    if "maxLength" in schema:
        found.append(("over maxLength", "a" * (schema["maxLength"] + 1)))
    if "maxItems" in schema:
        found.append(("over maxItems", [{}] * (schema["maxItems"] + 1)))
    if "enum" in schema:
        found.append(("outside enum", "surely-not-an-enum-value"))
    found += [
        ("number", rng.choice(ODD_NUMBERS)),
        ("string", rng.choice(ODD_STRINGS)),
        ("shape", rng.choice(ODD_SHAPES)),
    ]
    return found


def _set(raycluster: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    parent = raycluster
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value


def _delete(raycluster: dict[str, Any], path: tuple[Any, ...]) -> None:
    parent = raycluster
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


def mutations(example: dict[str, Any], schema: dict[str, Any], seed: int, count: int) -> Iterator[Mutation]:
    """`count` mutations of `example` under the CRD's openAPIV3Schema, each of one node, drawn with `seed`."""
    rng = random.Random(seed)
    for _ in range(count):
        raycluster = copy.deepcopy(example)
        nodes = [(p, v, s) for p, v, s in _nodes(raycluster, schema) if p and p[0] != "apiVersion" and p[0] != "kind"]
        path, value, node_schema = rng.choice(nodes)
        kind = rng.random()
        if kind < 0.1 and len(path) > 1:
            _delete(raycluster, path)
            what = "delete"
        elif kind < 0.15:
            depth = rng.choice([50, 500, 5000])
            _set(raycluster, path, _nested(depth))
            what = f"nest {depth}"
        elif kind < 0.4:  # a quantity of a container: where a number once froze the operator
            containers = [(p, v) for p, v, _ in _nodes(raycluster, schema) if len(p) >= 2 and p[-2] in QUANTITY_PATHS]
            if containers:
                path, _ = rng.choice(containers)
            value = rng.choice([*ODD_STRINGS[:11], *ODD_NUMBERS])
            _set(raycluster, path, value)
            what = f"set {value!r:.40}"
        elif path == ("metadata", "name") or kind < 0.45:
            path = ("metadata", "name")
            value = rng.choice(["c" * 53, "c" * 253, "Upper-Case", "fz-" + "é" * 10, "-bad-", "a.b"])
            _set(raycluster, path, value)
            what = f"name {value!r:.40}"
        else:
            label, value = rng.choice(_odd_values(node_schema, rng))
            _set(raycluster, path, value)
            what = f"{label} {value!r:.40}"
        yield Mutation(_show(path), what, raycluster)
