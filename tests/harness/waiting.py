"""How every test waits: for a condition, bounded, saying what it saw when the bound passes; and how it sees what
happened between its waits: samples taken in the background."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T | None],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition",
    state: Callable[[], Any] | None = None,
) -> T:
    """Poll `condition()` until it returns something truthy; fail after `timeout` seconds, the failure saying what
    `state()` (if given) describes then: a run whose log shows only the summary line still says what was seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f" (seen: {state()})" if state else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {message}{seen}")
        time.sleep(interval)


def holds_for(condition: Callable[[], Any], seconds: float, message: str, interval: float = 0.2) -> None:
    """Assert that `condition()` stays truthy for `seconds` (that nothing happens, as long as it would take to),
    checked every `interval`; fails at the first look that finds it false."""
    deadline = time.monotonic() + seconds
    while True:
        if not condition():
            raise AssertionError(f"no longer {message}")
        if time.monotonic() > deadline:
            return
        time.sleep(interval)


class Sampler(Generic[T]):
    """What `sample()` returns, every `interval` seconds in the background from now until stop(): the most heads a
    cluster had at once, every phase it went through, whether a worker went before its replacement ran."""

    def __init__(self, sample: Callable[[], T], interval: float = 0.2) -> None:
        self.samples: list[T] = []
        self._sample, self._interval = sample, interval
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="sampler")
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                self.samples.append(self._sample())
                if self._stop.wait(self._interval):
                    return
        except BaseException as failure:  # noqa: BLE001 - raised again by stop(), in the test's own thread
            self._failure = failure

    def stop(self) -> list[T]:
        """Every sample, the last one taken now; a sample that raised raises here."""
        self._stop.set()
        self._thread.join()
        if self._failure is not None:
            raise self._failure
        self.samples.append(self._sample())
        return self.samples
