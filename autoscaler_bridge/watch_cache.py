"""Where Kubernetes objects are seen without polling: a watch-fed cache of one kind (a reflector, as client-go's
informers have), used by the operator for RayClusters and every Ray pod, head Service and budget (its autoscalers
read their clusters' pods from it too: autoscaler_bridge.pod_channel).

It LISTs once, then WATCHes from that resourceVersion; each event updates the cache and calls `on_change` with the
object. A watch the server ends (its timeout) is reopened from the last resourceVersion seen, which bookmarks keep
recent; one that expired (410) or failed is replaced by a fresh LIST, after a backoff when it failed. Until the
first LIST, and from a failure until the next LIST succeeds, `items()` raises `NotSynced`: an API that does not
answer never reads as "no pods" (Ray issue 58933: the autoscaler terminated every node after a list-pods timeout).

A watch asked for the changes after a resourceVersion; an event at or before it is a replay (a lagging or rewound
API server sending again what the LIST already held) and is skipped, so that the cache never goes back in time: a
RayCluster or a pod deleted since is not brought back by its replayed ADDED.

What this process itself just created or deleted is put into the cache at once (`put`), so an autoscaler round sees
its own launches and deletions without waiting for their events; an object whose deletion the cache has seen already
(the create's response and the watch's events race) is not put back: the uids of the last objects deleted are kept.
A `transform` (client-go's SetTransform) keeps only what the reader uses of each object, and an `index` (client-go's
Indexer) finds the objects of one value (a cluster's pods) without scanning them all, for caches that hold many.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from autoscaler_bridge.kube_client import REQUEST_TIMEOUT

log = logging.getLogger(__name__)

WATCH_SECONDS = 300  # how long the server keeps one watch open; reopening costs one request
SYNC_SECONDS = 30.0  # how long a reader waits for the first LIST (or the one after a failure) before NotSynced
RETRY_SECONDS = (0.5, 10.0)  # backoff after a failed LIST or watch: first, most
DELETED_KEPT = 4096  # uids of the objects last seen deleted, that a late `put` must not bring back

Key = tuple[str, str]  # (namespace, name)


class NotSynced(Exception):
    """The cache cannot say what exists: no LIST has succeeded since it started or since its watch failed."""


def key_of(obj: dict[str, Any]) -> Key:
    return obj["metadata"].get("namespace") or "", obj["metadata"]["name"]


def _not_after(version: str, start: str) -> bool:
    """Whether the resourceVersion `version` is at or before `start` (both etcd's increasing integers; anything else
    is taken as after)."""
    try:
        return int(version) <= int(start)
    except (TypeError, ValueError):
        return False


def _later(held: dict[str, Any], obj: dict[str, Any]) -> bool:
    """Whether `held` is a later version of the same object than `obj`. resourceVersions are opaque to clients, but
    etcd's (and the project's API server's) are increasing integers; anything else is taken as not later."""
    if held["metadata"].get("uid") != obj["metadata"].get("uid"):
        return False
    try:
        return int(held["metadata"]["resourceVersion"]) > int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return False


class WatchCache:
    """Objects listed by `lister` (a client method such as `CoreV1Api.list_namespaced_pod`, with `args` before its
    keyword arguments) whose labels match `label_selector`, kept current by a watch in a background thread."""

    def __init__(
        self,
        lister: Callable[..., Any],
        *args: Any,
        label_selector: str,
        on_change: Callable[[dict[str, Any]], None] | None = None,
        watch_seconds: int = WATCH_SECONDS,
        name: str = "objects",
        transform: Callable[[dict[str, Any]], dict[str, Any]] = lambda obj: obj,
        index: Callable[[dict[str, Any]], Hashable] = lambda obj: None,
    ) -> None:
        self._lister, self._args = lister, args
        self._transform, self._index_of = transform, index
        self._index: dict[Hashable, set[Key]] = {}
        self.label_selector = label_selector
        self._on_change = on_change
        self.watch_seconds = watch_seconds
        self.name = name
        self._items: dict[Key, dict[str, Any]] = {}
        self._deleted: OrderedDict[str, None] = OrderedDict()  # uids, the newest last
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch {name}", daemon=True)
        self._response: Any = None

    # Lifecycle.
    def start(self) -> WatchCache:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        response = self._response
        if response is not None:
            try:
                response.shutdown()  # wakes the thread blocked reading the watch's next event
            except (ValueError, OSError):
                pass  # the watch is not reading (between two, or already ended)
        self._thread.join(timeout=10)

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    # Reading and writing.
    def items(self, wait: float = 0.0) -> list[dict[str, Any]]:
        """Every object the cache holds; raises NotSynced if it still cannot know after `wait` seconds (a reader
        that starts with the process waits for the first LIST: SYNC_SECONDS)."""
        self.check_synced(wait)
        with self._lock:
            return list(self._items.values())

    def indexed(self, value: Hashable, wait: float = 0.0) -> list[dict[str, Any]]:
        """The objects whose `index` is `value`; raises NotSynced as items() does."""
        self.check_synced(wait)
        with self._lock:
            return [self._items[key] for key in self._index.get(value, ())]

    def check_synced(self, wait: float = 0.0) -> None:
        """Raise NotSynced if the cache cannot say what exists after `wait` seconds."""
        if not self._synced.wait(wait):
            raise NotSynced(f"the {self.name} watch has not listed yet or failed since; retried")

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One object as the cache last saw it (whether synced or not), or None."""
        with self._lock:
            return self._items.get((namespace, name))

    def put(self, obj: dict[str, Any]) -> None:
        """An object as this process just received it from the API (created, patched). The watch may have seen a
        later version already, or the object deleted (the response and the events race): the later one stays, and
        a deleted one is not brought back."""
        obj = self._transform(obj)
        with self._lock:
            if obj["metadata"].get("uid") in self._deleted:
                return
            held = self._items.get(key_of(obj))
            if held is None or not _later(held, obj):
                self._store(obj)

    def refresh(self, obj: dict[str, Any]) -> None:
        """An object this process changed (a pod it deleted that stays, terminating), if the cache still holds it:
        never added back, since the watch may already have seen it go."""
        obj = self._transform(obj)
        with self._lock:
            held = self._items.get(key_of(obj))
            if held is not None and not _later(held, obj):
                self._store(obj)

    def discard(self, namespace: str, name: str) -> None:
        """An object this process found gone (404)."""
        with self._lock:
            self._drop((namespace, name))

    def _store(self, obj: dict[str, Any]) -> None:
        """Hold `obj` (the lock held)."""
        key = key_of(obj)
        self._drop(key)
        self._items[key] = obj
        self._index.setdefault(self._index_of(obj), set()).add(key)

    def _remember_deleted(self, obj: dict[str, Any]) -> None:
        """Remember that `obj` is gone, so that no late `put` brings it back (the lock held)."""
        uid = obj["metadata"].get("uid")
        if uid:
            self._deleted[uid] = None
            if len(self._deleted) > DELETED_KEPT:
                self._deleted.popitem(last=False)

    def _drop(self, key: Key) -> None:
        """Hold no object of `key` (the lock held)."""
        held = self._items.pop(key, None)
        if held is not None:
            value = self._index_of(held)
            keys = self._index.get(value)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._index[value]

    # The reflector.
    def _run(self) -> None:
        backoff = RETRY_SECONDS[0]
        version: str | None = None
        while not self._stopping.is_set():
            try:
                if version is None:
                    version = self._relist()
                version = self._watch(version)
                backoff = RETRY_SECONDS[0]
            except Exception as error:  # noqa: BLE001 - a failed LIST or watch is retried, never fatal
                if self._stopping.is_set():
                    return
                expired = isinstance(error, ApiException) and error.status == 410
                version = None
                if not expired:
                    self._synced.clear()
                    log.warning("%s watch failed (listing again in %.1fs): %s", self.name, backoff, error)
                    if self._stopping.wait(backoff):
                        return
                    backoff = min(backoff * 2, RETRY_SECONDS[1])

    def _relist(self) -> str:
        response = self._lister(
            *self._args,
            label_selector=self.label_selector,
            _preload_content=False,
            _request_timeout=REQUEST_TIMEOUT,
        )
        body = json.loads(response.data)
        listed = {key_of(obj): self._transform(obj) for obj in body["items"]}
        with self._lock:
            gone = [obj for key, obj in self._items.items() if key not in listed]
            changed = [obj for key, obj in listed.items() if self._items.get(key) != obj]
            for obj in gone:
                self._remember_deleted(obj)
            self._items, self._index = {}, {}
            for obj in listed.values():
                self._store(obj)
        self._synced.set()
        for obj in changed + gone:
            self._notify(obj)
        return str(body["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> str | None:
        """Follow one watch from `version` until the server ends it; the last resourceVersion seen, or None when
        the watch expired (410) and a fresh LIST is due."""
        start = version
        self._response = self._lister(
            *self._args,
            label_selector=self.label_selector,
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=self.watch_seconds,
            _preload_content=False,
            _request_timeout=(REQUEST_TIMEOUT[0], self.watch_seconds + REQUEST_TIMEOUT[1]),
        )
        try:
            for line in iter_resp_lines(self._response):
                if self._stopping.is_set():
                    return version
                if not line:
                    continue
                event = json.loads(line)
                obj = event["object"]
                if event["type"] == "ERROR":
                    if obj.get("code") == 410:
                        return None
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                if _not_after(obj["metadata"]["resourceVersion"], start):
                    continue  # a replay of what the cache already holds
                version = obj["metadata"]["resourceVersion"]
                if event["type"] == "BOOKMARK":
                    continue
                obj = self._transform(obj)
                with self._lock:
                    if event["type"] == "DELETED":
                        self._drop(key_of(obj))
                        self._remember_deleted(obj)
                    else:
                        self._store(obj)
                self._notify(obj)
        finally:
            self._response.release_conn()
            self._response = None
        return version

    def _notify(self, obj: dict[str, Any]) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(obj)
        except Exception:  # noqa: BLE001 - a listener's failure must not end the watch
            log.exception("%s watch: handling a change failed", self.name)
