"""The controllers the API server's own semantics need, as one background sweeper.

- Garbage collection: an object whose every ownerReference names an owner that
  no longer exists (by uid) is deleted; an owner deleted with
  `propagationPolicy: Foreground` waits for its dependents (those with
  `blockOwnerDeletion`), one deleted with `Orphan` first removes itself from
  its dependents' ownerReferences.
- Namespace deletion: a terminating namespace's content is deleted, then the
  namespace itself once it is empty.
- CRD deletion: its custom resources are deleted, then the CRD, which stops
  serving them.

Like the real controllers, this runs asynchronously: after a delete returns,
dependents disappear shortly afterwards, not within the same request.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from kube_apiserver.errors import ApiError
from kube_apiserver.registry import type_from_crd

if TYPE_CHECKING:
    from kube_apiserver.api import Api

SWEEP_INTERVAL = 1.0


class GarbageCollector:
    def __init__(self, api: Api) -> None:
        self.api = api
        self._kicked = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="garbage-collector", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        self._kicked.set()

    def stop(self) -> None:
        self._stopped.set()
        self._kicked.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._kicked.wait(SWEEP_INTERVAL)
            self._kicked.clear()
            if self._stopped.is_set():
                return
            try:
                while self.sweep():
                    pass
            except Exception:  # noqa: BLE001 - a failed sweep is retried on the next one
                import logging

                logging.getLogger(__name__).exception("garbage collection sweep failed")

    def _all(self) -> list[tuple[Any, dict[str, Any]]]:
        api = self.api
        found = []
        for resource_type in list(api.types.values()):
            for obj in api.store.items(resource_type.key):
                found.append((resource_type, obj))
        return found

    def _delete(self, resource_type: Any, obj: dict[str, Any], policy: str = "Background") -> bool:
        try:
            self.api.delete(
                resource_type, obj["metadata"].get("namespace"), obj["metadata"]["name"], {"propagationPolicy": policy}
            )
            return True
        except ApiError:
            return False

    def _remove_finalizer(self, resource_type: Any, obj: dict[str, Any], finalizer: str) -> None:
        current = self.api.store.get(
            resource_type.key, (obj["metadata"].get("namespace") or "", obj["metadata"]["name"])
        )
        if current is None or finalizer not in (current["metadata"].get("finalizers") or []):
            return
        current["metadata"]["finalizers"] = [f for f in current["metadata"]["finalizers"] if f != finalizer]
        self.api.store_or_remove(resource_type, current)

    def sweep(self) -> bool:
        """One pass; True when it changed something (another pass may find more)."""
        api = self.api
        changed = False
        with api.store.changed:
            everything = self._all()
        present = {obj["metadata"]["uid"] for _, obj in everything}
        dependents: dict[str, list[tuple[Any, dict[str, Any]]]] = {}
        for resource_type, obj in everything:
            for ref in obj["metadata"].get("ownerReferences") or []:
                dependents.setdefault(ref.get("uid"), []).append((resource_type, obj))

        for resource_type, obj in everything:
            metadata = obj["metadata"]
            uid = metadata["uid"]
            finalizers = metadata.get("finalizers") or []
            if metadata.get("deletionTimestamp"):
                mine = dependents.get(uid, [])
                if "foregroundDeletion" in finalizers:
                    for dep_type, dep in mine:
                        if not dep["metadata"].get("deletionTimestamp"):
                            changed |= self._delete(dep_type, dep, "Foreground")
                    blocking = [
                        d
                        for _, d in mine
                        if any(
                            r.get("uid") == uid and r.get("blockOwnerDeletion")
                            for r in d["metadata"].get("ownerReferences") or []
                        )
                    ]
                    if not blocking:
                        self._remove_finalizer(resource_type, obj, "foregroundDeletion")
                        changed = True
                if "orphan" in finalizers:
                    for dep_type, dep in mine:
                        self._disown(dep_type, dep, uid)
                    self._remove_finalizer(resource_type, obj, "orphan")
                    changed = True
                if resource_type.kind == "Namespace" and resource_type.group == "":
                    changed |= self._finish_namespace(obj, everything)
                if resource_type.kind == "CustomResourceDefinition":
                    changed |= self._finish_crd(resource_type, obj)
                continue
            refs = metadata.get("ownerReferences") or []
            if refs and not any(ref.get("uid") in present for ref in refs):
                changed |= self._delete(resource_type, obj)
        return changed

    def _disown(self, resource_type: Any, obj: dict[str, Any], owner_uid: str) -> None:
        current = self.api.store.get(
            resource_type.key, (obj["metadata"].get("namespace") or "", obj["metadata"]["name"])
        )
        if current is None:
            return
        current["metadata"]["ownerReferences"] = [
            r for r in current["metadata"].get("ownerReferences") or [] if r.get("uid") != owner_uid
        ]
        if not current["metadata"]["ownerReferences"]:
            del current["metadata"]["ownerReferences"]
        self.api.store.put(resource_type.key, current)

    def _finish_namespace(self, namespace: dict[str, Any], everything: list[tuple[Any, dict[str, Any]]]) -> bool:
        name = namespace["metadata"]["name"]
        content = [(t, o) for t, o in everything if t.namespaced and o["metadata"].get("namespace") == name]
        changed = False
        for resource_type, obj in content:
            if not obj["metadata"].get("deletionTimestamp"):
                changed |= self._delete(resource_type, obj)
        if not content and not namespace["metadata"].get("finalizers"):
            self.api.store.remove(("", "namespaces"), ("", name))
            changed = True
        return changed

    def _finish_crd(self, crd_type: Any, crd: dict[str, Any]) -> bool:
        changed = False
        remaining = 0
        for resource_type in type_from_crd(crd):
            served = self.api.types.get((resource_type.group, resource_type.version, resource_type.plural))
            if served is None:
                continue
            for obj in self.api.store.items(served.key):
                remaining += 1
                if not obj["metadata"].get("deletionTimestamp"):
                    changed |= self._delete(served, obj)
        if remaining == 0:
            self._remove_finalizer(crd_type, crd, "customresourcecleanup.apiextensions.k8s.io")
            changed = True
        return changed
