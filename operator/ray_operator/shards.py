"""Where a RayCluster's operator replica is chosen: rendezvous (highest random weight) hashing of the cluster's uid
over the live replicas, a pure function.

Every replica computes the same answer from the same members, with no coordination; when a replica joins or goes,
only the clusters whose highest weight it has (or had) move: about 1/N of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def weight(uid: str, member: str) -> int:
    """The weight of `member` for the cluster `uid`: 64 bits of a hash of both (blake2b: stable across processes
    and Python versions, unlike hash())."""
    digest = hashlib.blake2b(f"{uid}\x00{member}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def chosen(uid: str, members: Iterable[str]) -> str | None:
    """The member that runs the cluster `uid`: the one with the highest weight (ties, practically impossible, go to
    the greater name); None without members."""
    return max(members, key=lambda member: (weight(uid, member), member), default=None)


# Whose a RayCluster is, as one replica sees it (status.operator, the owner's Lease, the chosen member).
MINE = "mine"  # this replica runs it, and is the member chosen for it
HAND_OVER = "hand over"  # this replica runs it, another live member is chosen for it now: to be handed over
UNOWNED = "unowned"  # no owner yet (a new cluster, or one from before owners were recorded), chosen here: to claim
ORPHANED = "orphaned"  # its owner's Lease is gone or ran out, and this replica is chosen: to take over
FOR_PEER = "for a peer"  # nobody runs it and another member is chosen for it: that member claims it
ELSEWHERE = "elsewhere"  # another operator runs it, and its Lease is live
FENCED = "fenced"  # this replica's own Lease is not renewed: it may run no autoscaler


def ownership(me: str, valid: bool, owner: str, owner_alive: bool, successor: str | None) -> str:
    """Whose the cluster is for the replica `me` (whose Lease is `valid` or not): `owner` is the identity in its
    status.operator ("" for none), `owner_alive` whether that operator's Lease is live, `successor` the member
    chosen for it (None: no member is live)."""
    if not valid:
        return FENCED
    if owner == me:
        return MINE if successor in (me, None) else HAND_OVER
    if owner and owner_alive:
        return ELSEWHERE
    if successor not in (me, None):
        return FOR_PEER
    return ORPHANED if owner else UNOWNED
