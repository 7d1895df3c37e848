"""Kubernetes protobuf request bodies, decoded into the JSON form of the object.

kubectl's typed commands (`kubectl create namespace|configmap|secret|serviceaccount`)
`kubectl auth can-i`, and Helm's release storage (Secrets, and the DeleteOptions of `helm uninstall`)
send `application/vnd.kubernetes.protobuf`, and a real server accepts it. The
envelope is the magic `k8s\\0` followed by a `runtime.Unknown` whose `raw`
field holds the object; the message layouts below are the field numbers of
Kubernetes' `generated.proto` for the kinds those commands create. Other kinds
are refused with 415, which tells a client to send JSON.
"""

from __future__ import annotations

import base64
from typing import Any

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

Schema = dict[int, tuple[str, Any]]

_TYPE_META: Schema = {1: ("apiVersion", "string"), 2: ("kind", "string")}
_UNKNOWN: Schema = {
    1: ("typeMeta", _TYPE_META),
    2: ("raw", "bytes"),
    3: ("contentEncoding", "string"),
    4: ("contentType", "string"),
}
_TIME: Schema = {1: ("seconds", "int"), 2: ("nanos", "int")}
_OWNER_REFERENCE: Schema = {
    1: ("kind", "string"),
    3: ("name", "string"),
    4: ("uid", "string"),
    5: ("apiVersion", "string"),
    6: ("controller", "bool"),
    7: ("blockOwnerDeletion", "bool"),
}
_OBJECT_META: Schema = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    5: ("uid", "string"),
    6: ("resourceVersion", "string"),
    7: ("generation", "int"),
    8: ("creationTimestamp", _TIME),
    11: ("labels", ("map", "string", "string")),
    12: ("annotations", ("map", "string", "string")),
    13: ("ownerReferences", ("repeated", _OWNER_REFERENCE)),
    14: ("finalizers", ("repeated", "string")),
}
_OBJECT_REFERENCE: Schema = {
    1: ("kind", "string"),
    2: ("namespace", "string"),
    3: ("name", "string"),
    4: ("uid", "string"),
    5: ("apiVersion", "string"),
}
_LOCAL_OBJECT_REFERENCE: Schema = {1: ("name", "string")}
_DELETE_OPTIONS: Schema = {
    1: ("gracePeriodSeconds", "int"),
    2: ("preconditions", {1: ("uid", "string"), 2: ("resourceVersion", "string")}),
    3: ("orphanDependents", "bool"),
    4: ("propagationPolicy", "string"),
    5: ("dryRun", ("repeated", "string")),
}
_RESOURCE_ATTRIBUTES: Schema = {
    1: ("namespace", "string"),
    2: ("verb", "string"),
    3: ("group", "string"),
    4: ("version", "string"),
    5: ("resource", "string"),
    6: ("subresource", "string"),
    7: ("name", "string"),
}
MESSAGES: dict[tuple[str, str], Schema] = {
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): {
        1: ("metadata", _OBJECT_META),
        2: ("spec", {1: ("resourceAttributes", _RESOURCE_ATTRIBUTES)}),
    },
    ("meta.k8s.io/v1", "DeleteOptions"): _DELETE_OPTIONS,
    ("v1", "DeleteOptions"): _DELETE_OPTIONS,
    ("v1", "Namespace"): {1: ("metadata", _OBJECT_META), 2: ("spec", {1: ("finalizers", ("repeated", "string"))})},
    ("v1", "ConfigMap"): {
        1: ("metadata", _OBJECT_META),
        2: ("data", ("map", "string", "string")),
        3: ("binaryData", ("map", "string", "base64")),
        4: ("immutable", "bool"),
    },
    ("v1", "Secret"): {
        1: ("metadata", _OBJECT_META),
        2: ("data", ("map", "string", "base64")),
        3: ("type", "string"),
        4: ("stringData", ("map", "string", "string")),
        5: ("immutable", "bool"),
    },
    ("v1", "ServiceAccount"): {
        1: ("metadata", _OBJECT_META),
        2: ("secrets", ("repeated", _OBJECT_REFERENCE)),
        3: ("imagePullSecrets", ("repeated", _LOCAL_OBJECT_REFERENCE)),
        4: ("automountServiceAccountToken", "bool"),
    },
}


class UnsupportedProtobuf(ValueError):
    """A body this server cannot decode (it asks the client for JSON instead)."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise UnsupportedProtobuf("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    fields, pos = [], 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise UnsupportedProtobuf(f"wire type {wire}")
        fields.append((number, value))
    return fields


def _scalar(value: int | bytes, kind: str) -> Any:
    if kind == "string":
        return value.decode() if isinstance(value, bytes) else str(value)
    if kind == "bytes":
        return value
    if kind == "base64":
        return base64.b64encode(value).decode() if isinstance(value, bytes) else value
    if kind == "bool":
        return bool(value)
    if kind == "int":
        return value
    raise UnsupportedProtobuf(kind)


def _value(value: int | bytes, kind: Any) -> Any:
    if isinstance(kind, dict):
        return decode_message(value if isinstance(value, bytes) else b"", kind)
    return _scalar(value, kind)


def decode_message(data: bytes, schema: Schema) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for number, value in _fields(data):
        if number not in schema:
            continue
        name, kind = schema[number]
        if isinstance(kind, tuple) and kind[0] == "map":
            entry = dict(_fields(value if isinstance(value, bytes) else b""))
            key = _scalar(entry.get(1, b""), kind[1])
            result.setdefault(name, {})[key] = _scalar(entry.get(2, b""), kind[2])
        elif isinstance(kind, tuple) and kind[0] == "repeated":
            result.setdefault(name, []).append(_value(value, kind[1]))
        else:
            result[name] = _value(value, kind)
    return result


def _timestamp(time: dict[str, Any]) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(time.get("seconds", 0), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object; raises UnsupportedProtobuf."""
    if not body.startswith(MAGIC):
        raise UnsupportedProtobuf("no k8s protobuf envelope")
    unknown = decode_message(body[len(MAGIC) :], _UNKNOWN)
    type_meta = unknown.get("typeMeta") or {}
    key = (type_meta.get("apiVersion", ""), type_meta.get("kind", ""))
    schema = MESSAGES.get(key)
    if schema is None:
        raise UnsupportedProtobuf(f"{key[1]} in protobuf")
    obj = {"apiVersion": key[0], "kind": key[1], **decode_message(unknown.get("raw", b""), schema)}
    metadata = obj.get("metadata") or {}
    if "creationTimestamp" in metadata:
        if metadata["creationTimestamp"].get("seconds"):
            metadata["creationTimestamp"] = _timestamp(metadata["creationTimestamp"])
        else:
            del metadata["creationTimestamp"]
    return obj
