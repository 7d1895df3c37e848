"""Where the operator's work waits: a de-duplicating queue of RayCluster keys with delayed adds, as client-go's
workqueue, served by a bounded pool of worker threads.

A key is in the queue at most once however often it is added; a key being worked on is not handed to a second
worker, and one added meanwhile is queued again when its work is done. So one RayCluster is never reconciled twice
at once, a burst of changes costs one reconciliation, and a slow or hung cluster holds one worker, never the rest.
A key whose work failed comes back after a backoff that doubles with each failure in a row.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable

log = logging.getLogger(__name__)


class WorkQueue:
    """Keys to work on; after failures, a key waits `backoff` seconds, doubled per failure in a row up to
    `max_backoff`. `clock` is injectable for tests."""

    def __init__(
        self, backoff: float = 1.0, max_backoff: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.backoff, self.max_backoff = backoff, max_backoff
        self._failures: dict[Hashable, int] = {}
        self._clock = clock
        self._queue: deque[Hashable] = deque()
        self._dirty: set[Hashable] = set()  # queued, or added again while being worked on
        self._processing: set[Hashable] = set()
        self._later: list[tuple[float, int, Hashable]] = []  # (due, tie-breaker, key)
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._closed = False

    def add(self, key: Hashable) -> None:
        with self._changed:
            self._add(key)

    def _add(self, key: Hashable) -> None:
        if key in self._dirty or self._closed:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._changed.notify()

    def add_after(self, key: Hashable, delay: float) -> None:
        """Add `key` once `delay` seconds have passed (an earlier add still adds it at once)."""
        with self._changed:
            heapq.heappush(self._later, (self._clock() + delay, next(self._order), key))
            self._changed.notify()

    def add_after_failure(self, key: Hashable) -> float:
        """Add `key` again after the backoff its failures in a row call for; returns that delay."""
        with self._changed:
            failures = self._failures[key] = self._failures.get(key, 0) + 1
        delay = min(self.max_backoff, self.backoff * 2 ** (failures - 1))
        self.add_after(key, delay)
        return delay

    def forget_failures(self, key: Hashable) -> None:
        """The work on `key` succeeded: its next failure starts the backoff afresh."""
        with self._changed:
            self._failures.pop(key, None)

    def get(self, timeout: float | None = None) -> Hashable | None:
        """The next key to work on, now marked as being worked on; None when closed or after `timeout` seconds."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._changed:
            while True:
                self._promote_due()
                if self._queue:
                    key = self._queue.popleft()
                    self._dirty.discard(key)
                    self._processing.add(key)
                    return key
                if self._closed:
                    return None
                waits = [self._later[0][0] - self._clock()] if self._later else []
                if deadline is not None:
                    waits.append(deadline - self._clock())
                    if waits[-1] <= 0:
                        return None
                self._changed.wait(max(0.0, min(waits)) if waits else None)

    def _promote_due(self) -> None:
        now = self._clock()
        while self._later and self._later[0][0] <= now:
            _, _, key = heapq.heappop(self._later)
            self._add(key)

    def done(self, key: Hashable) -> None:
        """The work on `key` ended; if it was added meanwhile, it is queued again."""
        with self._changed:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
                self._changed.notify()

    def close(self) -> None:
        """No more keys are handed out; waiting workers return None."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def __len__(self) -> int:
        with self._changed:
            return len(self._queue)


class PoolStuck(Exception):
    """Every worker has been on one key for too long: nothing else is being worked on."""


def pool_health(busy: list[tuple[Hashable, float]], workers: int, stuck_seconds: float) -> dict[str, object]:
    """What the liveness endpoint says of the pool: how many workers are busy, the longest work under way; raises
    PoolStuck when every worker has been busy longer than `stuck_seconds` (the operator is alive, its pool is not)."""
    longest = max(busy, key=lambda item: item[1], default=None)
    health: dict[str, object] = {"workers": workers, "busy": len(busy)}
    if longest is not None:
        health["longest"] = {
            "key": "/".join(map(str, longest[0])) if isinstance(longest[0], tuple) else str(longest[0]),
            "seconds": round(longest[1], 1),
        }
    if busy and len(busy) >= workers and min(seconds for _, seconds in busy) > stuck_seconds:
        raise PoolStuck(f"every one of the {workers} reconcile workers has been busy for over {stuck_seconds:.0f}s")
    return health


class WorkerPool:
    """`workers` threads, each taking a key from the queue and calling `work(key)` on it; a failure is logged and
    never ends a worker. `busy()` says what each busy worker is on, and since when."""

    def __init__(self, queue: WorkQueue, work: Callable[[Hashable], None], workers: int) -> None:
        self.queue, self.work = queue, work
        self.workers = workers
        self._threads = [
            threading.Thread(target=self._serve, name=f"reconcile-{i}", daemon=True) for i in range(workers)
        ]
        self._working: dict[str, tuple[Hashable, float]] = {}  # thread name → (key, monotonic start)

    def busy(self) -> list[tuple[Hashable, float]]:
        """(key, seconds on it) of every worker working now."""
        now = time.monotonic()
        return [(key, now - started) for key, started in list(self._working.values())]

    def start(self) -> WorkerPool:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.queue.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _serve(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return
            me = threading.current_thread().name
            self._working[me] = (key, time.monotonic())
            try:
                self.work(key)
            except Exception:  # noqa: BLE001 - one key's failure must not end the worker
                log.exception("working on %s failed", key)
            finally:
                del self._working[me]
                self.queue.done(key)
