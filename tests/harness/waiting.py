"""How every test waits: for a condition, bounded, saying what it saw when the bound passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

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
