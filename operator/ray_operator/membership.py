"""Where this operator's liveness is kept, and another operator's is read: one coordination.k8s.io Lease per operator
process, renewed every `retry_seconds`, as client-go's leader election keeps its lock.

Every RayCluster names its owner in `status.operator` (identity and Lease); an operator runs a cluster's autoscaler
only while it owns the cluster and its own Lease is valid, so a second operator (a second release, a stray
`kubectl apply`) never runs a second autoscaler for a cluster the first one runs. The fencing, and what it assumes
of clocks:

- This operator counts its Lease valid until `renew_deadline` after the *start* of its last successful renewal
  (10 s, less than the Lease's 15 s duration). Past that it stops its autoscalers, before any other operator could
  take one of its clusters over.
- Another operator takes a cluster over only when the owner's Lease is gone (deleted when an operator stops), or has
  not changed for a whole `lease_duration` measured by the taker's own monotonic clock from the moment it first saw
  that version of the Lease. No timestamps are compared across machines: only clock *rates* are assumed alike
  (within the 5 s between deadline and duration), as client-go assumes.
- A claim is a status write conditional on the RayCluster's resourceVersion: of two operators claiming at once,
  one wins.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from datetime import datetime, timezone
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from autoscaler_bridge.kube_client import KubeCalls

log = logging.getLogger(__name__)

LEASE_DURATION = 15.0
RENEW_DEADLINE = 10.0
RETRY_SECONDS = 2.0
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


class Membership:
    """This operator's Lease, renewed from a thread of its own, and what it has seen of other operators' Leases."""

    def __init__(
        self,
        calls: KubeCalls,
        namespace: str,
        identity: str,
        lease_duration: float = LEASE_DURATION,
        renew_deadline: float = RENEW_DEADLINE,
        retry_seconds: float = RETRY_SECONDS,
        read_every: float = RETRY_SECONDS,
        clock: Any = time.monotonic,
    ) -> None:
        self.calls, self.namespace, self.identity = calls, namespace, identity
        self.lease = f"{namespace}/{lease_name(identity)}"
        self.lease_duration, self.renew_deadline, self.retry_seconds = lease_duration, renew_deadline, retry_seconds
        self.read_every = read_every  # another operator's Lease is read at most this often
        self._clock = clock
        self._api = kubernetes.client.CoordinationV1Api(calls.client)
        # A renewal is retried for half the deadline at most: the next one starts in time.
        self._renew_calls = KubeCalls(calls.client, retry_for=renew_deadline / 2)
        self._valid_until = 0.0
        self._seen: dict[str, tuple[str, float]] = {}  # another operator's Lease → (resourceVersion, first seen)
        self._verdicts: dict[str, tuple[float, bool]] = {}  # another operator's Lease → (read at, alive)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._renew_forever, daemon=True, name="membership")

    @property
    def owner_record(self) -> dict[str, str]:
        """What `status.operator` says of a cluster this operator owns."""
        return {"identity": self.identity, "lease": self.lease}

    def start(self) -> Membership:
        self.renew()
        self._thread.start()
        return self

    def valid(self) -> bool:
        """Whether this operator may run autoscalers now: its Lease renewed within the renew deadline."""
        return self._clock() < self._valid_until

    def renew(self) -> bool:
        """Renew (or make) this operator's Lease; whether it worked. Valid until `renew_deadline` after this started."""
        started = self._clock()
        name = lease_name(self.identity)
        now = _micro_time()
        try:
            try:
                self._renew_calls(self._api.patch_namespaced_lease, name, self.namespace, {"spec": {"renewTime": now}})
            except ApiException as error:
                if error.status != 404:
                    raise
                lease = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": name, "namespace": self.namespace, "labels": dict(_LABELS)},
                    "spec": {
                        "holderIdentity": self.identity,
                        "leaseDurationSeconds": int(self.lease_duration),
                        "acquireTime": now,
                        "renewTime": now,
                    },
                }
                self._renew_calls(self._api.create_namespaced_lease, self.namespace, lease)
        except Exception as error:  # noqa: BLE001 - the API unreachable: the Lease runs out, the autoscalers stop
            log.warning("renewing the operator's Lease %s failed: %s", self.lease, error)
            return False
        self._valid_until = started + self.renew_deadline
        return True

    def _renew_forever(self) -> None:
        was_valid = True
        while not self._stopped.wait(self.retry_seconds):
            self.renew()
            valid = self.valid()
            if valid != was_valid:
                log.log(
                    logging.INFO if valid else logging.WARNING,
                    "the operator's Lease %s is %s",
                    self.lease,
                    "valid again: its clusters' autoscalers restart" if valid else "not renewed: autoscalers stopped",
                )
            was_valid = valid

    def alive(self, lease: str) -> bool:
        """Whether the operator holding `lease` ("<namespace>/<name>") may still run autoscalers: its Lease exists and
        has changed within `lease_duration` of this operator's first sight of its current version. A Lease this
        operator may not read counts as alive: never two autoscalers."""
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
            seen = self._seen.get(lease)
            if seen is None or seen[0] != version:
                self._seen[lease] = (version, now)
                return True
            return now - seen[1] < self.lease_duration

    def stop(self) -> None:
        """Stop renewing and delete the Lease, so that another operator takes this one's clusters over at once."""
        self._stopped.set()
        self._thread.join(timeout=self.retry_seconds + 5)
        self._valid_until = 0.0
        try:
            self.calls(self._api.delete_namespaced_lease, lease_name(self.identity), self.namespace)
        except Exception as error:  # noqa: BLE001 - it expires by itself
            log.info("deleting the operator's Lease %s: %s", self.lease, error)
