"""The operator's work queue and worker pool, without Kubernetes: de-duplication, one worker per key, delayed adds,
and a hung key that holds one worker only."""

from __future__ import annotations

import threading

from ray_operator.work_queue import WorkerPool, WorkQueue
from tests.conftest import wait_for


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
