"""The operator's Lease and what it makes of the other replicas' (watched) and of another install's (read), against
the project's API server, with a clock of the test's own: fencing is about time, and no test waits for it."""

from __future__ import annotations

import time

import kubernetes

from autoscaler_bridge import fence
from autoscaler_bridge.kube_client import KubeCalls
from ray_operator.membership import GROUP_LABEL, Membership, lease_name
from tests.harness.waiting import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def member(kube, identity: str, clock: Clock, group: str = "ray-operator", **kwargs) -> Membership:
    """A Membership whose own thread never renews within a test (the test renews it), and which reads another
    install's Lease again when asked a second later."""
    calls = KubeCalls(kube, retry_for=0.5)
    return Membership(
        calls, "default", identity, group=group, retry_seconds=3600, read_every=1.0, clock=clock, **kwargs
    ).start()


def test_a_lease_is_valid_until_its_renew_deadline_then_fenced_until_renewed(kube):
    clock = Clock()
    mine = member(kube, "op-a", clock)
    lease = kubernetes.client.CoordinationV1Api(kube).read_namespaced_lease(lease_name("op-a"), "default")
    assert (lease.spec.holder_identity, lease.spec.lease_duration_seconds) == ("op-a", 15)
    assert lease.metadata.labels[GROUP_LABEL] == "ray-operator"
    assert mine.owner_record == {"identity": "op-a", "lease": "default/ray-operator-op-a"}
    assert mine.members() == {"op-a"}
    clock.now += 9.9
    assert mine.valid()
    clock.now += 0.2  # 10 s after the last renewal began: it stops its autoscalers, 5 s before others may take over
    assert not mine.valid() and mine.members() == set()
    assert mine.renew() and mine.valid()
    mine.stop()


def test_replicas_see_each_other_join_and_a_silent_one_go_a_duration_later_by_their_own_watch(kube):
    clock = Clock()
    b, c = member(kube, "op-b", clock), member(kube, "op-c", clock)
    assert wait_for(lambda: c.refresh() == {"op-b", "op-c"}, message="c sees b join")
    assert c.is_member(b.lease) and c.alive(b.lease)
    clock.now += 14
    c.renew()  # c's own renewal, seen through its watch: the watch is known to work until now
    assert wait_for(lambda: c.refresh() == {"op-b", "op-c"} and c.alive(b.lease), message="b alive after 14 s")
    clock.now += 2
    c.renew()
    assert wait_for(lambda: c.refresh() == {"op-c"}, message="b gone: unchanged for 15 s of c's clock")
    assert not c.alive(b.lease)
    leases = kubernetes.client.CoordinationV1Api(kube)
    assert lease_name("op-b") not in {lease.metadata.name for lease in leases.list_namespaced_lease("default").items}
    b.renew()  # b was only paused: its renewal makes its Lease again, and it is back as soon as c's watch shows it
    assert wait_for(lambda: c.alive(b.lease) and c.refresh() == {"op-b", "op-c"}, message="b back")
    b.stop()  # a stopped replica deletes its Lease: its clusters are taken at once
    assert wait_for(lambda: not c.alive(b.lease) and c.refresh() == {"op-c"}, message="b's Lease deleted")
    c.stop()


def test_a_watch_that_delivers_nothing_never_makes_a_replica_look_gone(kube):
    clock = Clock()
    d, e = member(kube, "op-d", clock), member(kube, "op-e", clock)
    assert wait_for(lambda: e.refresh() == {"op-d", "op-e"}, message="e sees d")
    e.leases.stop()  # e's watch stalls: its own renewals no longer come back through it
    clock.now += 60
    e.renew()
    assert e.refresh() == {"op-d", "op-e"} and e.alive(d.lease)
    d.stop()
    e.stop()


def test_an_operator_of_another_install_is_read_directly_alive_while_its_lease_changes(kube):
    clock = Clock()
    other, observer = member(kube, "op-f", clock, group="another"), member(kube, "op-g", clock)
    assert observer.members() == {"op-g"} and not observer.is_member(other.lease)
    assert observer.alive(other.lease)  # first sight of this version: alive for a whole duration from now
    clock.now += 14
    assert observer.alive(other.lease)
    other.renew()
    clock.now += 1
    assert observer.alive(other.lease)  # a new version: the duration starts again
    clock.now += 15.1
    assert not observer.alive(other.lease)  # unchanged for 15 s of the observer's own clock
    other.stop()
    clock.now += 1
    assert not observer.alive(other.lease)
    observer.stop()


def test_autoscalers_read_the_deadline_and_a_lapse_stops_them_before_it_moves_on(kube, tmp_path):
    clock = Clock()
    path = tmp_path / "lease-valid-until"
    lapses: list[bool] = []
    mine = member(kube, "op-h", time.monotonic, fence_path=path, on_lapse=lambda: lapses.append(fence.fenced(path)))
    assert not fence.fenced(path)
    mine.stop()  # a stopped operator fences its autoscalers at once
    assert fence.fenced(path)
    late = member(
        kube, "op-i", clock, fence_path=path, on_lapse=lambda: lapses.append(fence.fenced(path)), renew_deadline=10.0
    )
    clock.now += 10.5  # the Lease lapsed: on the next renewal, on_lapse runs while the old deadline still fences
    assert late.renew() and lapses == [True]
    late.stop()
    assert not fence.fenced(None) and not fence.fenced(tmp_path / "absent")


def test_a_renewal_the_api_server_refuses_leaves_the_lease_to_run_out(kube, api_server):
    clock = Clock()
    mine = member(kube, "op-j", clock)
    api_server.stop()
    assert not mine.renew()
    clock.now += 10.1
    assert not mine.valid()
