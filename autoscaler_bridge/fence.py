"""Where an autoscaler learns whether it may still act: a file holding the end of its operator's Lease's validity, on
the monotonic clock every process of the machine shares (ray_operator.membership writes it after each renewal).

An autoscaler reads it before each round and before each pod it creates or deletes, so the autoscalers of an
operator that is paused, cut off from the API server or gone stop acting by themselves, before another operator
may take their clusters over.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


class Fenced(RuntimeError):
    """The operator's Lease is past its deadline: the autoscaler may not act."""


def write_deadline(path: Path, until: float) -> None:
    """Set the deadline (0: fenced now), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(repr(until))
    os.replace(partial, path)


def fenced(path: str | Path | None) -> bool:
    """Whether the deadline in `path` has passed (no path, or no file: not fenced; an unreadable one: fenced)."""
    if not path:
        return False
    try:
        until = float(Path(path).read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True
    return time.monotonic() >= until


def check(path: str | Path | None) -> None:
    """Raise Fenced when the deadline in `path` has passed."""
    if fenced(path):
        raise Fenced(f"the operator's Lease is past its deadline ({path}): not acting")
