"""Where Ray pods wait for a place to start: the bound on Ray pods (heads and workers) starting at once on one node,
shared by an operator replica and its autoscalers through one file.

Ray pods starting together on one node overload it (each `ray start` gives up after 30 s), so the operator counts the
Ray pods starting on the busiest node, from its cache of every replica's pods (ray_operator.observation), and
publishes the count with the bound every second while it runs autoscalers. A node provider claims places before it
launches workers, and the operator before it makes a head; both claim under the file's lock, so a replica's
autoscalers never launch together past the bound. A claim counts until the operator's count holds its pods: while
it is no more than CLAIM_LAG_SECONDS older than the count, and at most CLAIM_SECONDS; a claim whose pods were not
made (their create failed) is withdrawn, so that a RayCluster whose pods the API refuses, retried, holds no places
from the others. Times are on the monotonic clock every process of the machine shares (as autoscaler_bridge.fence's).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

CLAIM_LAG_SECONDS = 2.0  # a pod made is in the operator's cache (its watch) within this, as a rule
CLAIM_SECONDS = 10.0  # a claim counts no longer, whether or not a count was published since (the operator's gone)


@dataclass(frozen=True)
class Gate:
    """What the file holds: the bound (0: none), the Ray pods starting on the busiest node when counted, and the claims
    made since (when, how many)."""

    bound: int
    starting: int
    counted_at: float
    claims: tuple[tuple[float, int], ...] = ()

    def live_claims(self, now: float) -> tuple[tuple[float, int], ...]:
        """The claims whose pods the count may not hold yet."""
        return tuple(
            (at, n) for at, n in self.claims if now - at < CLAIM_SECONDS and at > self.counted_at - CLAIM_LAG_SECONDS
        )

    def claimed(self, now: float) -> int:
        return sum(n for _, n in self.live_claims(now))

    def taken(self, now: float) -> int:
        """The places taken: pods starting on the busiest node, and those claimed that the count may not hold."""
        return self.starting + self.claimed(now)

    def admitted(self, wanted: int, now: float, keep: int = 0) -> int:
        """How many of `wanted` pods may start now, leaving `keep` places free."""
        if self.bound <= 0:
            return wanted
        return max(0, min(wanted, self.bound - keep - self.taken(now)))


def parse(text: str) -> Gate | None:
    """The gate a file's text holds; None when it holds none (empty, or not ours)."""
    try:
        data = json.loads(text)
        return Gate(
            int(data["bound"]),
            int(data["starting"]),
            float(data["counted_at"]),
            tuple((float(at), int(n)) for at, n in data["claims"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


def _text(gate: Gate) -> str:
    return json.dumps(
        {"bound": gate.bound, "starting": gate.starting, "counted_at": gate.counted_at, "claims": gate.claims}
    )


class _Locked:
    """The gate file, open and locked: read, then replaced in place (a rename would lose the lock)."""

    def __init__(self, path: Path, create: bool) -> None:
        self.path, self.flags = path, os.O_RDWR | (os.O_CREAT if create else 0)

    def __enter__(self) -> _Locked:
        self.fd = os.open(self.path, self.flags, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self.fd)
            raise
        return self

    def __exit__(self, *_: object) -> None:
        os.close(self.fd)  # and with it the lock

    def read(self) -> Gate | None:
        os.lseek(self.fd, 0, os.SEEK_SET)
        return parse(os.read(self.fd, 1 << 20).decode(errors="replace"))

    def write(self, gate: Gate) -> None:
        data = _text(gate).encode()
        os.lseek(self.fd, 0, os.SEEK_SET)
        os.truncate(self.fd, 0)
        os.write(self.fd, data)


def publish(path: Path, bound: int, starting: int, counted_at: float) -> None:
    """The operator's count (made at `counted_at`), keeping the claims it may not hold yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _Locked(path, create=True) as file:
        old = file.read()
        file.write(Gate(bound, starting, counted_at, old.live_claims(time.monotonic()) if old else ()))


class Claim(NamedTuple):
    """What a claim got: the places claimed (of those wanted), the places taken before it (Gate.taken), and when it
    was made (what names it in the file)."""

    allowed: int
    taken: int
    at: float = 0.0


def claimed(path: str | Path | None) -> int:
    """The pods claimed that the last count may not hold yet."""
    if not path:
        return 0
    try:
        with _Locked(Path(path), create=False) as file:
            gate = file.read()
    except FileNotFoundError:
        return 0
    return gate.claimed(time.monotonic()) if gate else 0


def claim(path: str | Path | None, wanted: int, counted: tuple[int, int] | None = None, keep: int = 0) -> Claim:
    """Places for `wanted` Ray pods about to be made: as many as the bound leaves, `keep` places left free (0 …
    wanted), claimed. A node provider claims against the published count; the operator gives its own (bound,
    starting), counted just now. No file (or none named): no bound, but where the operator counts."""
    if not path:
        return Claim(wanted, 0)
    now = time.monotonic()
    try:
        with _Locked(Path(path), create=counted is not None) as file:
            gate = file.read()
            if counted is not None:
                fresh = Gate(*counted, counted_at=now)
                gate = replace(fresh, claims=gate.live_claims(now)) if gate else fresh
            if gate is None:
                return Claim(wanted, 0)
            allowed = gate.admitted(wanted, now, keep)
            if allowed:
                file.write(replace(gate, claims=(*gate.live_claims(now), (now, allowed))))
            return Claim(allowed, gate.taken(now), now)
    except FileNotFoundError:
        return Claim(wanted, 0)


def withdraw(path: str | Path | None, claim: Claim, unused: int) -> None:
    """`unused` of a claim's places free again at once: the pods they were for were not made."""
    if not path or unused <= 0:
        return
    try:
        with _Locked(Path(path), create=False) as file:
            gate = file.read()
            if gate is None:
                return
            kept = ((at, n - unused if at == claim.at else n) for at, n in gate.claims)
            file.write(replace(gate, claims=tuple((at, n) for at, n in kept if n > 0)))
    except FileNotFoundError:
        return
