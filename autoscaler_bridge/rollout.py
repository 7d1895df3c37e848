"""Where a changed podType's workers are replaced without losing work or going past maxWorkers: the decision of
one autoscaler round, from what the pods show (autoscaler_bridge.draining_autoscaler acts on it).

An outdated worker running Ray (made from the podType's former template) is held until a new-template worker
stands in for it, then released: its pod is deleted and its container drains it, so its running work finishes.
Where maxWorkers leaves room, new-template workers are launched first. Where it leaves none, one outdated worker at
a time is released while nothing of the podType starts or drains, and its replacement is launched once it is gone;
the podType then has one worker fewer for the length of a drain, never one more than its maxWorkers.

Nothing is remembered between rounds: a new-template worker that stood in for an outdated one carries the label
REPLACEMENT, so a restarted autoscaler (or another operator replica's) carries on where the last one was.
"""

from __future__ import annotations

from dataclasses import dataclass

REPLACEMENT = "ray-replacement"  # label (an autoscaler tag) of a new-template worker an outdated one was released for


@dataclass(frozen=True)
class Rollout:
    """One podType's workers in one autoscaler round."""

    held: tuple[str, ...]  # outdated workers running Ray and not being deleted
    spare: tuple[str, ...]  # new-template workers running Ray that no outdated worker was released for yet
    starting: int  # new-template workers not yet running Ray, and launches queued
    deleting: int  # the podType's pods being deleted (draining)
    room: int  # pods the podType may add: its and the cluster's maxWorkers less every pod and launch counted


@dataclass(frozen=True)
class Step:
    released: tuple[tuple[str, str | None], ...]  # outdated workers to delete, each with the spare it is released for
    launch: int  # new-template workers to launch


def rollout_step(rollout: Rollout) -> Step:
    """What to do this round: release an outdated worker for each spare; launch new-template workers for those still
    held, as far as room allows (those already starting count); with no room, release one while nothing starts or
    drains."""
    released: list[tuple[str, str | None]] = list(zip(rollout.held, rollout.spare, strict=False))
    still_held = rollout.held[len(released) :]
    launch = max(0, min(len(still_held), rollout.room) - rollout.starting)
    if still_held and not released and rollout.room <= 0 and not rollout.starting and not rollout.deleting:
        released.append((still_held[0], None))
    return Step(tuple(released), launch)
