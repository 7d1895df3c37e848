"""The operator's Lease and what it makes of another operator's, against the project's API server, with a clock of
the test's own: fencing is about time, and no test waits for it."""

from __future__ import annotations

import kubernetes

from autoscaler_bridge.kube_client import KubeCalls
from ray_operator.membership import Membership, lease_name


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def member(kube, identity: str, clock: Clock) -> Membership:
    """A Membership whose own thread never renews within a test (the test renews it), and which reads another
    operator's Lease again when asked a second later."""
    calls = KubeCalls(kube, retry_for=0.5)
    return Membership(calls, "default", identity, retry_seconds=3600, read_every=1.0, clock=clock).start()


def test_a_lease_is_valid_until_its_renew_deadline_then_fenced_until_renewed(kube):
    clock = Clock()
    mine = member(kube, "op-a", clock)
    lease = kubernetes.client.CoordinationV1Api(kube).read_namespaced_lease(lease_name("op-a"), "default")
    assert (lease.spec.holder_identity, lease.spec.lease_duration_seconds) == ("op-a", 15)
    assert mine.owner_record == {"identity": "op-a", "lease": "default/ray-operator-op-a"}
    clock.now += 9.9
    assert mine.valid()
    clock.now += 0.2  # 10 s after the last renewal began: it stops its autoscalers, 5 s before others may take over
    assert not mine.valid()
    assert mine.renew() and mine.valid()
    mine.stop()


def test_another_operator_is_alive_while_its_lease_changes_and_gone_a_duration_after(kube):
    clock = Clock()
    other, observer = member(kube, "op-b", clock), member(kube, "op-c", clock)
    assert observer.alive(other.lease)  # first sight of this version: alive for a whole duration from now
    clock.now += 14
    assert observer.alive(other.lease)
    other.renew()  # a new version: the duration starts again when the observer first sees it
    assert observer.alive(other.lease)  # (read a moment ago: the same verdict, the new version not yet seen)
    clock.now += 1
    assert observer.alive(other.lease)
    clock.now += 14
    assert observer.alive(other.lease)
    clock.now += 1.1  # unchanged for 15 s of the observer's own clock since it saw this version
    assert not observer.alive(other.lease)
    other.stop()  # a stopped operator deletes its Lease: its clusters are taken at once
    clock.now += 1
    assert not observer.alive(other.lease)
    observer.stop()


def test_a_renewal_the_api_server_refuses_leaves_the_lease_to_run_out(kube, api_server):
    clock = Clock()
    mine = member(kube, "op-d", clock)
    api_server.stop()
    assert not mine.renew()
    clock.now += 10.1
    assert not mine.valid()
