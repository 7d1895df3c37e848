"""Where the operator's replicas know one another: one coordination.k8s.io Lease per operator process, renewed every
`retry_seconds` as client-go's leader election keeps its lock, and a watch on the Leases of its group (the replicas
of one install), from which the live members are read without a request. Each RayCluster is run by the member
ray_operator.shards chooses for it; `status.operator` names that member (identity and Lease).

The fencing, and what it assumes of clocks:

- This operator counts its Lease valid until `renew_deadline` after the *start* of its last successful renewal
  (10 s, less than the Lease's 15 s duration). Past that it runs no autoscaler: its reconciliations stop them, and
  each autoscaler process stops itself, since it reads the deadline from a file (`fence_path`, in the monotonic
  clock every process of the machine shares) before each round and each pod it creates or deletes; a paused
  operator's autoscalers stop on their own. After such a lapse, every autoscaler is stopped (`on_lapse`) before a
  new deadline is written: none acts on ownership that may have moved meanwhile.
- Another member counts as gone when its Lease is deleted (an operator deletes its own when it stops), or when its
  Lease has not changed for a whole `lease_duration` measured on this operator's own monotonic clock from its first
  sight of that version, and the watch delivered this operator's own renewals throughout (a stalled watch never
  makes a live member look gone). No timestamps are compared across machines: only clock *rates* are assumed alike
  (within the 5 s between deadline and duration), as client-go assumes.
- A cluster moves only by a status write conditional on the RayCluster's resourceVersion: its owner hands it over
  after stopping its autoscaler, or a member takes it after its owner's Lease is gone.

An operator of another group (a second install) is not a member: its Lease is read directly (`alive`), and its
clusters are left alone while it lives.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from autoscaler_bridge.fence import write_deadline
from autoscaler_bridge.kube_client import KubeCalls
from autoscaler_bridge.watch_cache import WatchCache

log = logging.getLogger(__name__)

LEASE_DURATION = 15.0
RENEW_DEADLINE = 10.0
RETRY_SECONDS = 2.0
SHORT_REQUEST = (2, 2)  # seconds to connect, to read: a request beside the renewals
GROUP_LABEL = "ray.io/operator-group"
_LABELS = {"app.kubernetes.io/name": "ray", "app.kubernetes.io/component": "operator-membership"}


def default_identity() -> str:
    """This process among operators: its host (a pod's name) and pid (a restarted container keeps pid 1, and with it
    the clusters it owned; two processes on one host differ)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def lease_name(identity: str) -> str:
    """The Lease of an operator: a DNS subdomain made from its identity."""
    name = re.sub(r"[^a-z0-9.-]+", "-", f"ray-operator-{identity}".lower()).strip("-.")
    return name[:253].rstrip("-.")


def _micro_time() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _version(obj: dict[str, Any]) -> str:
    return str(obj["metadata"].get("resourceVersion") or "")


class Membership:
    """This operator's Lease, renewed from a thread of its own, and the members of its group as its watch shows them.
    `on_members()` is called when the live members or this operator's own validity change; `on_lapse()` after a
    lapse of its Lease, before it counts as valid again."""

    def __init__(
        self,
        calls: KubeCalls,
        namespace: str,
        identity: str,
        group: str = "ray-operator",
        lease_duration: float = LEASE_DURATION,
        renew_deadline: float = RENEW_DEADLINE,
        retry_seconds: float = RETRY_SECONDS,
        read_every: float = RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        fence_path: Path | None = None,
        on_members: Callable[[], None] = lambda: None,
        on_lapse: Callable[[], None] = lambda: None,
    ) -> None:
        self.calls, self.namespace, self.identity, self.group = calls, namespace, identity, group
        self.name = lease_name(identity)
        self.lease = f"{namespace}/{self.name}"
        self.lease_duration, self.renew_deadline, self.retry_seconds = lease_duration, renew_deadline, retry_seconds
        self.read_every = read_every  # another group's operator's Lease is read at most this often
        self.fence_path = fence_path
        self._clock = clock
        self._on_members, self._on_lapse = on_members, on_lapse
        self._api = kubernetes.client.CoordinationV1Api(calls.client)
        # A renewal is retried for half the deadline at most: the next one starts in time.
        self._renew_calls = KubeCalls(calls.client, retry_for=renew_deadline / 2)
        self._valid_until = 0.0
        self._renewed_once = False
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[str, float]] = {}  # a member's Lease name → (resourceVersion, first seen)
        self._written: tuple[int, float] = (0, 0.0)  # this operator's last renewal: (resourceVersion, its start)
        self._watch_fresh = 0.0  # the start of the last of this operator's renewals the watch delivered
        self._members: frozenset[str] = frozenset()
        self._verdicts: dict[str, tuple[float, bool]] = {}  # another operator's Lease → (read at, alive)
        self._foreign: dict[str, tuple[str, float]] = {}  # another operator's Lease → (resourceVersion, first seen)
        self.leases = WatchCache(
            self._api.list_namespaced_lease,
            namespace,
            label_selector=f"{GROUP_LABEL}={group}",
            on_change=self._lease_changed,
            name="operator Leases",
        )
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._renew_forever, daemon=True, name="membership")

    @property
    def owner_record(self) -> dict[str, str]:
        """What `status.operator` says of a cluster this operator owns."""
        return self.record_of(self.identity)

    def record_of(self, identity: str) -> dict[str, str]:
        """What `status.operator` says of a cluster the member `identity` owns."""
        return {"identity": identity, "lease": f"{self.namespace}/{lease_name(identity)}"}

    def start(self) -> Membership:
        """Make the Lease, then learn the members (waiting for the watch's first list, a few seconds at most)."""
        self.renew()
        self.leases.start()
        self.leases.wait_synced(self.renew_deadline)
        self.refresh()
        self._thread.start()
        return self

    # This operator's own Lease.
    def valid(self) -> bool:
        """Whether this operator may run autoscalers now: its Lease renewed within the renew deadline."""
        return self._clock() < self._valid_until

    def renew(self) -> bool:
        """Renew (or make) this operator's Lease; whether it worked. Valid until `renew_deadline` after this started;
        after a lapse, only once `on_lapse` has stopped every autoscaler."""
        started = self._clock()
        now = _micro_time()
        try:
            try:
                renewal = {"metadata": {"labels": {GROUP_LABEL: self.group}}, "spec": {"renewTime": now}}
                lease = self._renew_calls(self._api.patch_namespaced_lease, self.name, self.namespace, renewal)
            except ApiException as error:
                if error.status != 404:
                    raise
                lease = self._renew_calls(self._api.create_namespaced_lease, self.namespace, self._new_lease(now))
        except Exception as error:  # noqa: BLE001 - the API unreachable: the Lease runs out, the autoscalers stop
            log.warning("renewing the operator's Lease %s failed: %s", self.lease, error)
            return False
        if self._renewed_once and started >= self._valid_until:
            log.warning(
                "the operator's Lease %s lapsed: every autoscaler is stopped before it counts again", self.lease
            )
            self._on_lapse()
        self._renewed_once = True
        with self._lock:
            self._written = (int((lease.metadata and lease.metadata.resource_version) or 0), started)
        held = self.leases.get(self.namespace, self.name)
        if held is not None:  # the watch may have delivered this renewal before its response came
            self._lease_changed(held)
        self._set_valid_until(started + self.renew_deadline)
        return True

    def _new_lease(self, now: str) -> dict[str, Any]:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {**_LABELS, GROUP_LABEL: self.group},
            },
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease_duration),
                "acquireTime": now,
                "renewTime": now,
            },
        }

    def _set_valid_until(self, until: float) -> None:
        """The deadline, for this process and (in the fence file) for its autoscaler processes; written before the
        autoscalers can read a later one."""
        self._valid_until = until
        if self.fence_path is not None:
            write_deadline(self.fence_path, until)

    def _renew_forever(self) -> None:
        was_valid, members = True, self.members()
        while not self._stopped.wait(self.retry_seconds):
            self.renew()
            valid, now_members = self.valid(), self.refresh()
            if valid != was_valid:
                log.log(
                    logging.INFO if valid else logging.WARNING,
                    "the operator's Lease %s is %s",
                    self.lease,
                    "valid again: its clusters' autoscalers restart" if valid else "not renewed: autoscalers stopped",
                )
            if now_members != members:
                log.info("the operator's replicas: %s", ", ".join(sorted(now_members)) or "none")
            if valid != was_valid or now_members != members:
                self._on_members()
            was_valid, members = valid, now_members

    # The group's members.
    def _lease_changed(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if name != self.name:
            return
        try:
            version = int(_version(obj))
        except ValueError:
            return
        with self._lock:
            if version >= self._written[0]:
                self._watch_fresh = max(self._watch_fresh, self._written[1])

    def members(self) -> frozenset[str]:
        """The identities of the group's live members as last refreshed, this operator among them while its Lease is
        valid (before the watch has listed, or without leave to watch Leases, it is the only one it knows)."""
        with self._lock:
            members = self._members
        return members | {self.identity} if self.valid() else members - {self.identity}

    def refresh(self) -> frozenset[str]:
        """Read the live members from the watch; while it cannot say (not listed, or failed since), they stay as they
        were: nobody is counted gone for a silence this operator may not have heard. The Lease of a member found gone
        is deleted (unless renewed meanwhile): a replica that starts later would otherwise count it live for a whole
        duration, and a killed pod's Lease would stay for good."""
        try:
            leases = self.leases.items()
        except Exception:  # noqa: BLE001 - NotSynced
            return self.members()
        now = self._clock()
        live, gone = set(), []
        with self._lock:
            seen = {}
            for lease in leases:
                name, version = lease["metadata"]["name"], _version(lease)
                before = self._seen.get(name)
                first = before[1] if before is not None and before[0] == version else now
                seen[name] = (version, first)
                holder = (lease.get("spec") or {}).get("holderIdentity") or ""
                quiet_for = self._watch_fresh - first  # how long the watch has shown it unchanged
                if holder and name != self.name and quiet_for < self.lease_duration:
                    live.add(holder)
                elif name != self.name:
                    gone.append((name, version))
            self._seen = seen
            self._members = frozenset(live)
        for name, version in gone:
            self._delete(name, version)
        return self.members()

    def _delete(self, name: str, version: str) -> None:
        """Delete a gone member's Lease, only as this operator last saw it (a renewal since wins). One short attempt,
        never retried here (the next refresh tries again): the renewals on this thread must not wait for it."""
        options = kubernetes.client.V1DeleteOptions(
            preconditions=kubernetes.client.V1Preconditions(resource_version=version)
        )
        try:
            self._api.delete_namespaced_lease(name, self.namespace, body=options, _request_timeout=SHORT_REQUEST)
            log.info("deleted the Lease %s/%s of a replica gone for %.0fs", self.namespace, name, self.lease_duration)
        except ApiException as error:
            if error.status not in (404, 409):
                log.warning("deleting the Lease %s/%s of a gone replica: %s", self.namespace, name, error)
        except Exception as error:  # noqa: BLE001 - the API unreachable: tried again on the next refresh
            log.info("deleting the Lease %s/%s of a gone replica: %s", self.namespace, name, error)

    def _gone(self, held: dict[str, Any]) -> bool:
        """Whether a member's Lease (as the watch holds it) ran out: the version the last refresh saw unchanged while
        the watch delivered this operator's own renewals for a whole `lease_duration`."""
        with self._lock:
            seen = self._seen.get(held["metadata"]["name"])
            return seen is not None and seen[0] == _version(held) and self._watch_fresh - seen[1] >= self.lease_duration

    def is_member(self, lease: str) -> bool:
        """Whether `lease` ("<namespace>/<name>") is the Lease of a member of this operator's group, as its watch
        holds them (live or not)."""
        namespace, _, name = lease.partition("/")
        return namespace == self.namespace and self.leases.get(namespace, name) is not None

    def alive(self, lease: str) -> bool:
        """Whether the operator holding `lease` may still run autoscalers. A member's Lease is judged from the watch;
        any other is read directly, at most every `read_every`: alive when it exists and has changed within
        `lease_duration` of this operator's first sight of its current version (a member's Lease the watch has not
        shown yet counts as alive). A Lease this operator may not read counts as alive: never two autoscalers."""
        namespace, _, name = lease.partition("/")
        held = self.leases.get(namespace, name) if namespace == self.namespace else None
        if held is not None:
            return not self._gone(held)
        with self._lock:
            last = self._verdicts.get(lease)
        if last is not None and self._clock() - last[0] < self.read_every:
            return last[1]  # read moments ago: one read serves every cluster that operator owns
        verdict = self._read_alive(lease)
        with self._lock:
            self._verdicts[lease] = (self._clock(), verdict)
        return verdict

    def _read_alive(self, lease: str) -> bool:
        namespace, _, name = lease.partition("/")
        try:
            found = self.calls(self._api.read_namespaced_lease, name, namespace)
        except ApiException as error:
            if error.status == 404:
                return False
            if error.status == 403:
                return True
            raise
        version, now = str(found.metadata.resource_version if found.metadata else ""), self._clock()
        with self._lock:
            seen = self._foreign.get(lease)
            if seen is None or seen[0] != version:
                self._foreign[lease] = (version, now)
                return True
            return now - seen[1] < self.lease_duration

    def stop(self) -> None:
        """Stop renewing and delete the Lease, so that the other members take this one's clusters over at once."""
        self._stopped.set()
        self._thread.join(timeout=self.retry_seconds + 5)
        self._set_valid_until(0.0)
        try:
            self.calls(self._api.delete_namespaced_lease, self.name, self.namespace)
        except Exception as error:  # noqa: BLE001 - it expires by itself
            log.info("deleting the operator's Lease %s: %s", self.lease, error)
        self.leases.stop()
