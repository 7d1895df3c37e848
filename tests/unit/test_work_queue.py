"""The operator's work queue and worker pool, without Kubernetes: de-duplication, one worker per key, delayed adds,
and a hung key that holds one worker only."""

from __future__ import annotations

import threading

import pytest

from ray_operator.work_queue import PoolStuck, WorkerPool, WorkQueue, pool_health
from tests.harness.waiting import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_key_added_many_times_is_queued_once():
    queue = WorkQueue()
    for key in ["a", "b", "a", "a", "b"]:
        queue.add(key)
    assert len(queue) == 2
    assert [queue.get(0), queue.get(0), queue.get(0)] == ["a", "b", None]


def test_a_key_being_worked_on_is_not_handed_out_again_and_comes_back_once_done_if_added_meanwhile():
    queue = WorkQueue()
    queue.add("a")
    assert queue.get(0) == "a"
    queue.add("a")
    queue.add("a")
    assert queue.get(0) is None  # still being worked on
    queue.done("a")
    assert queue.get(0) == "a"
    queue.done("a")
    assert queue.get(0) is None  # not added again: gone


def test_a_delayed_add_comes_when_due_and_an_earlier_add_is_not_held_back():
    clock = Clock()
    queue = WorkQueue(clock=clock)
    queue.add_after("later", 5.0)
    queue.add_after("now-too", 5.0)
    queue.add("now-too")
    assert queue.get(0) == "now-too"
    queue.done("now-too")
    assert queue.get(0) is None
    clock.now += 5.0
    assert {queue.get(0), queue.get(0)} == {"later", "now-too"}


def test_a_failing_key_comes_back_after_a_backoff_doubling_per_failure_until_it_succeeds():
    clock = Clock()
    queue = WorkQueue(backoff=1.0, max_backoff=4.0, clock=clock)
    delays = [queue.add_after_failure("bad") for _ in range(4)]
    assert delays == [1.0, 2.0, 4.0, 4.0]
    assert queue.get(0) is None
    clock.now += 1.0
    assert queue.get(0) == "bad"
    queue.done("bad")
    queue.forget_failures("bad")
    assert queue.add_after_failure("bad") == 1.0


def test_a_closed_queue_hands_out_nothing_and_wakes_its_waiters():
    queue = WorkQueue()
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(queue.get()))
    waiter.start()
    queue.close()
    waiter.join(5)
    assert got == [None] and not waiter.is_alive()
    queue.add("a")
    assert queue.get(0) is None


def test_a_hung_key_holds_one_worker_and_the_others_go_on():
    queue = WorkQueue()
    release = threading.Event()
    done: list[str] = []

    def work(key):
        if key == "hung":
            release.wait(30)  # a cluster whose API calls hang
        if key == "fails":
            raise RuntimeError("a failure ends no worker")
        done.append(key)

    pool = WorkerPool(queue, work, workers=2).start()
    try:
        queue.add("hung")
        queue.add("fails")
        for i in range(20):
            queue.add(f"cluster-{i}")
        wait_for(lambda: len(done) == 20, timeout=10, message="every other key worked on")
        assert "hung" not in done
    finally:
        release.set()
        pool.stop()
    assert done[-1] == "hung"


@pytest.mark.parametrize(
    "busy, workers, health",
    [
        ([], 4, {"workers": 4, "busy": 0}),
        (
            [(("ray", "a"), 2.04), (("ray", "b"), 400.0)],
            4,
            {"workers": 4, "busy": 2, "longest": {"key": "ray/b", "seconds": 400.0}},
        ),  # one hung cluster holds one worker
        (
            [(("ray", "a"), 301.0), (("ray", "b"), 10.0)],
            2,
            {"workers": 2, "busy": 2, "longest": {"key": "ray/a", "seconds": 301.0}},
        ),  # the other still gets through
    ],
)
def test_the_pools_health_says_what_it_works_on(busy, workers, health):
    assert pool_health(busy, workers, stuck_seconds=300) == health


def test_a_pool_whose_every_worker_is_stuck_fails_its_health():
    with pytest.raises(PoolStuck, match="every one of the 2 reconcile workers has been busy for over 300s"):
        pool_health([(("ray", "a"), 301.0), (("ray", "b"), 500.0)], 2, stuck_seconds=300)


def test_the_pool_says_what_each_busy_worker_is_on():
    release = threading.Event()
    pool = WorkerPool(WorkQueue(), lambda key: release.wait(10), workers=2).start()
    pool.queue.add(("ray", "slow"))
    wait_for(lambda: pool.busy(), timeout=5, message="a busy worker")
    [(key, seconds)] = pool.busy()
    assert key == ("ray", "slow") and 0 <= seconds < 5
    release.set()
    wait_for(lambda: not pool.busy(), timeout=5, message="the worker free again")
    pool.stop()
