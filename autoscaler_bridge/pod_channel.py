"""How an autoscaler reaches its cluster's pods: through its operator, over a Unix socket in the operator's work
directory. The operator's `PodService` answers each request from its own watch-fed pod cache and makes the API calls
with its own client (autoscaler_bridge.cluster_pods.CachedPods); the autoscaler's `PodChannel` asks.

So an autoscaler holds no watch, no API client and no credentials: the API server has one watch of Ray pods per
operator replica, not one per running cluster more, and an autoscaler costs its replica none of the memory an API
client and its requests take (`python -m bench.monitor_memory`). Its writes are the operator's, counted by the crash
points as the operator's.

A request is a pickled tuple (operation, namespace, cluster, arguments) on a multiprocessing connection, answered by
("ok", value), ("not-synced", message) or ("failed", message). Each thread of an autoscaler has a connection of its
own, with one request in flight. One thread of the operator waits for requests on every connection and answers the
listings (most requests: a round lists, and rarely writes) at once from the cache; a few threads answer the rest (a
create may take seconds of retries, a listing while the cache cannot know waits for it). Only what a node provider reads
of a pod crosses: its metadata, phase and IP.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from autoscaler_bridge import fence
from autoscaler_bridge.cluster_pods import ClusterPods
from autoscaler_bridge.watch_cache import SYNC_SECONDS, NotSynced

log = logging.getLogger(__name__)

ANSWERING_THREADS = 8
FENCE_POLL_SECONDS = 0.5  # how often an autoscaler waiting for an answer looks at its operator's Lease deadline
OPERATIONS = ("items", "create", "label", "delete")


class PodRequestFailed(Exception):
    """The operator could not do what an autoscaler asked (the API refused it, or failed past its retries)."""


def as_read(pod: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a node provider reads of a pod: its metadata (name, labels, deletion), phase and IP."""
    if pod is None:
        return None
    status = pod.get("status") or {}
    return {"metadata": pod["metadata"], "status": {key: status[key] for key in ("phase", "podIP") if key in status}}


def answer(pods: ClusterPods, operation: str, args: tuple[Any, ...], wait: float | None = None) -> tuple[str, Any]:
    """The answer to one request, about the pods of one cluster; a listing waits up to `wait` seconds (None:
    SYNC_SECONDS) for the pods to be known."""
    if operation not in OPERATIONS:
        return "failed", f"no operation {operation!r}"
    try:
        if operation == "items":
            return "ok", [as_read(pod) for pod in pods.items(SYNC_SECONDS if wait is None else wait)]
        value = getattr(pods, operation)(*args)
    except NotSynced as error:
        return "not-synced", str(error)
    except Exception as error:  # noqa: BLE001 - the autoscaler's launch or round fails with it, as it would have
        return "failed", f"{type(error).__name__}: {error}"
    return "ok", value if operation == "delete" else as_read(value)


def served(path: Path) -> bool:
    """Whether an operator serves its autoscalers at `path` now (another operator's, when this one has not started)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:  # no socket, or one left by an operator that is gone
            return False
    return True


class PodService:
    """The operator's end: answers requests on the socket at `path` with `pods_of(namespace, cluster)`."""

    def __init__(self, path: Path, pods_of: Callable[[str, str], ClusterPods]) -> None:
        self.path, self._pods_of = path, pods_of
        self._selector = selectors.DefaultSelector()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._answering = ThreadPoolExecutor(max_workers=ANSWERING_THREADS, thread_name_prefix="pod requests")
        self._lock = threading.Lock()
        self._busy: set[Connection] = set()  # a request of theirs is being answered
        self._ended: set[Connection] = set()  # closed by their autoscaler while busy: closed once answered
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True, name="pod service")

    def start(self) -> PodService:
        self.path.unlink(missing_ok=True)  # a socket left by an operator before this one
        previous = os.umask(0o077)  # the operator's autoscalers only
        try:
            self._listener.bind(str(self.path))
        finally:
            os.umask(previous)
        self._listener.listen(128)
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._answering.shutdown(wait=False, cancel_futures=True)
        self._listener.close()
        self.path.unlink(missing_ok=True)

    def _receive(self) -> None:
        while not self._stopping.is_set():
            for key, _ in self._selector.select(timeout=0.5):
                try:
                    if key.fileobj is self._listener:
                        accepted, _ = self._listener.accept()
                        self._selector.register(Connection(accepted.detach()), selectors.EVENT_READ)
                    else:
                        self._read(key.fileobj)  # type: ignore[arg-type]  # only Connections besides the listener
                except Exception:  # noqa: BLE001 - e.g. out of file descriptors: that request fails, the service goes on
                    log.exception("an autoscaler's connection failed")
        for key in list(self._selector.get_map().values()):
            if key.fileobj is not self._listener:
                key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()

    def _read(self, connection: Connection) -> None:
        with self._lock:
            if connection in self._busy:  # readable while its request is answered: its autoscaler closed it
                self._selector.unregister(connection)
                self._ended.add(connection)
                return
        try:
            request = connection.recv()
        except Exception:  # noqa: BLE001 - its autoscaler ended (EOF), or sent what is no request: it is let go
            self._selector.unregister(connection)
            connection.close()
            return
        if self._answered_at_once(connection, request):
            return
        with self._lock:
            self._busy.add(connection)
        self._answering.submit(self._answer, connection, request)

    def _answered_at_once(self, connection: Connection, request: Any) -> bool:
        """Answer a read the cache knows now, in the receiving thread; False for any other request (or trouble): the
        answering threads take it."""
        try:
            operation, namespace, cluster, args = request
            if operation != "items":
                return False
            reply = answer(self._pods_of(namespace, cluster), operation, tuple(args), wait=0)
        except Exception:  # noqa: BLE001 - the answering threads say what is wrong with it
            return False
        if reply[0] == "not-synced":
            return False
        self._send(connection, reply)
        return True

    def _answer(self, connection: Connection, request: Any) -> None:
        try:
            operation, namespace, cluster, args = request
            reply = answer(self._pods_of(namespace, cluster), operation, tuple(args))
        except Exception as error:  # noqa: BLE001 - a malformed request fails alone
            reply = ("failed", f"{type(error).__name__}: {error}")
        with self._lock:
            self._busy.discard(connection)
            ended = connection in self._ended
            self._ended.discard(connection)
        if ended:
            connection.close()
            return
        self._send(connection, reply)

    @staticmethod
    def _send(connection: Connection, reply: tuple[str, Any]) -> None:
        try:
            connection.send(reply)
        except OSError:
            log.debug("an autoscaler went before its answer")


class PodChannel:
    """The autoscaler's end: the pods of `cluster` in `namespace`, asked of the operator at `path` (ClusterPods'
    operations, a listing waiting as long as the operator lets it).
    While it waits for an answer it watches the operator's Lease deadline in `fence_file` (autoscaler_bridge.fence):
    an operator that is paused or cut off may never answer, and its autoscaler must stop by itself before another
    operator may take the cluster over, so past the deadline the request raises Fenced."""

    def __init__(self, path: str, namespace: str, cluster: str, fence_file: str | None = None) -> None:
        self.path, self.namespace, self.cluster = path, namespace, cluster
        self.fence_file = fence_file
        self._local = threading.local()

    def _ask(self, operation: str, *args: Any) -> Any:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
            except OSError:
                sock.close()
                raise
            connection = self._local.connection = Connection(sock.detach())
        try:
            connection.send((operation, self.namespace, self.cluster, args))
            while not connection.poll(FENCE_POLL_SECONDS):
                fence.check(self.fence_file)
            kind, value = connection.recv()
        except (EOFError, OSError, fence.Fenced):  # the connection's state is unknown: the next request makes another
            self._local.connection = None
            connection.close()
            raise
        if kind == "ok":
            return value
        if kind == "not-synced":
            raise NotSynced(value)
        raise PodRequestFailed(value)

    def items(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._ask("items")
        return items

    def create(self, pod: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self._ask("create", pod)
        return created

    def label(self, name: str, labels: dict[str, str]) -> dict[str, Any] | None:
        labelled: dict[str, Any] | None = self._ask("label", name, labels)
        return labelled

    def delete(self, names: list[str], grace: dict[str, int] | None = None) -> list[str]:
        gone: list[str] = self._ask("delete", names, grace)
        return gone
