"""Objects by resource type, one monotonic resourceVersion, and the bounded event history watches read.

Everything a client sees changes through `put` and `remove`, each of which
takes the next resourceVersion and records a watch event. The history keeps
the newest events only: a watch that asks to resume from a version older
than what is kept gets `Gone` (HTTP 410), as with etcd compaction.
"""

from __future__ import annotations

import copy
import json
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TypeKey = tuple[str, str]  # (group, plural)
ObjectKey = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects


class Gone(Exception):
    """The resourceVersion asked for is older than the history kept."""


@dataclass(frozen=True)
class Event:
    resource_version: int
    type_key: TypeKey
    type: str  # ADDED, MODIFIED, DELETED
    object: dict[str, Any]


def object_key(obj: dict[str, Any]) -> ObjectKey:
    metadata = obj["metadata"]
    return (metadata.get("namespace") or "", metadata["name"])


class Store:
    def __init__(self, history_limit: int = 10000) -> None:
        self.changed = threading.Condition(threading.RLock())
        self.resource_version = 0
        self._objects: dict[TypeKey, dict[ObjectKey, dict[str, Any]]] = {}
        self._by_uid: dict[str, tuple[TypeKey, ObjectKey]] = {}
        self._history: deque[Event] = deque()
        self._history_limit = history_limit
        # Events up to this version are no longer in the history.
        self.compacted = 0

    # Reads: every object handed out is a copy.
    def get(self, type_key: TypeKey, key: ObjectKey) -> dict[str, Any] | None:
        with self.changed:
            obj = self._objects.get(type_key, {}).get(key)
            return copy.deepcopy(obj) if obj is not None else None

    def items(self, type_key: TypeKey, namespace: str | None = None) -> list[dict[str, Any]]:
        with self.changed:
            objects = self._objects.get(type_key, {})
            return [
                copy.deepcopy(obj) for key, obj in sorted(objects.items()) if namespace is None or key[0] == namespace
            ]

    def type_keys(self) -> list[TypeKey]:
        with self.changed:
            return list(self._objects)

    def by_uid(self, uid: str) -> dict[str, Any] | None:
        with self.changed:
            where = self._by_uid.get(uid)
            return self.get(*where) if where else None

    def exists_uid(self, uid: str) -> bool:
        with self.changed:
            return uid in self._by_uid

    # Writes.
    def _record(self, type_key: TypeKey, event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        self._history.append(Event(self.resource_version, type_key, event_type, copy.deepcopy(obj)))
        while len(self._history) > self._history_limit:
            self.compacted = self._history.popleft().resource_version
        self.changed.notify_all()
        return copy.deepcopy(obj)

    def put(self, type_key: TypeKey, obj: dict[str, Any]) -> dict[str, Any]:
        """Store obj (ADDED if new, else MODIFIED); returns it with its new resourceVersion."""
        obj = copy.deepcopy(obj)
        key = object_key(obj)
        with self.changed:
            objects = self._objects.setdefault(type_key, {})
            event_type = "MODIFIED" if key in objects else "ADDED"
            objects[key] = obj
            self._by_uid[obj["metadata"]["uid"]] = (type_key, key)
            return self._record(type_key, event_type, obj)

    def remove(self, type_key: TypeKey, key: ObjectKey) -> dict[str, Any] | None:
        with self.changed:
            obj = self._objects.get(type_key, {}).pop(key, None)
            if obj is None:
                return None
            self._by_uid.pop(obj["metadata"]["uid"], None)
            return self._record(type_key, "DELETED", obj)

    def drop_type(self, type_key: TypeKey) -> None:
        with self.changed:
            for obj in self._objects.pop(type_key, {}).values():
                self._by_uid.pop(obj["metadata"]["uid"], None)

    # Watches.
    def events_after(self, resource_version: int, type_key: TypeKey) -> list[Event]:
        with self.changed:
            if resource_version < self.compacted:
                raise Gone(resource_version)
            return [e for e in self._history if e.resource_version > resource_version and e.type_key == type_key]

    def wait(self, resource_version: int, timeout: float) -> None:
        """Block until something newer than resource_version is stored, or timeout."""
        with self.changed:
            self.changed.wait_for(lambda: self.resource_version > resource_version, timeout)

    def compact(self) -> None:
        """Forget the whole event history (as etcd compaction does): older watches get 410."""
        with self.changed:
            self._history.clear()
            self.compacted = self.resource_version

    # Persistence across a restart of the server.
    def save(self, path: Path) -> None:
        with self.changed:
            data = {
                "resourceVersion": self.resource_version,
                "objects": [[list(t), obj] for t, objects in self._objects.items() for obj in objects.values()],
            }
            path.write_text(json.dumps(data))

    def load(self, path: Path) -> Iterator[tuple[TypeKey, dict[str, Any]]]:
        """Restore what `save` wrote; yields each object (callers re-register CRDs from it)."""
        data = json.loads(path.read_text())
        with self.changed:
            for type_key, obj in data["objects"]:
                key = (type_key[0], type_key[1])
                self._objects.setdefault(key, {})[object_key(obj)] = obj
                self._by_uid[obj["metadata"]["uid"]] = (key, object_key(obj))
            self.resource_version = self.compacted = data["resourceVersion"]
            restored = [(t, copy.deepcopy(o)) for t, objects in self._objects.items() for o in objects.values()]
        yield from restored
