"""Rendezvous hashing: every replica's answer is the same, the load is even, and a change of members moves only the
clusters it must."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from ray_operator.shards import ELSEWHERE, FENCED, FOR_PEER, HAND_OVER, MINE, ORPHANED, UNOWNED, chosen, ownership

UIDS = [str(uuid.UUID(int=i * 7919 + 1)) for i in range(4000)]


def test_the_same_members_in_any_order_choose_the_same_replica():
    assert all(chosen(uid, ["a", "b", "c"]) == chosen(uid, ["c", "a", "b"]) for uid in UIDS[:200])


def test_no_member_no_choice_and_one_member_takes_everything():
    assert chosen(UIDS[0], []) is None
    assert {chosen(uid, ["only"]) for uid in UIDS[:100]} == {"only"}


@pytest.mark.parametrize("replicas", [2, 3, 4, 8])
def test_clusters_spread_evenly(replicas):
    members = [f"ray-operator-{i}-1" for i in range(replicas)]
    owned = Counter(chosen(uid, members) for uid in UIDS)
    mean = len(UIDS) / replicas
    assert set(owned) == set(members)
    assert max(owned.values()) <= 1.1 * mean


def test_a_joining_member_takes_only_its_share_and_a_leaving_one_gives_only_its_own():
    before = {uid: chosen(uid, ["a", "b", "c"]) for uid in UIDS}
    joined = {uid: chosen(uid, ["a", "b", "c", "d"]) for uid in UIDS}
    moved = [uid for uid in UIDS if before[uid] != joined[uid]]
    assert all(joined[uid] == "d" for uid in moved)  # only to the new member
    assert 0.2 * len(UIDS) <= len(moved) <= 0.3 * len(UIDS)  # about a quarter
    left = {uid: chosen(uid, ["a", "c"]) for uid in UIDS}
    assert all(left[uid] == before[uid] for uid in UIDS if before[uid] != "b")  # only b's clusters move


@pytest.mark.parametrize(
    "valid,owner,owner_alive,successor,expected",
    [
        (False, "me", True, "me", FENCED),  # a lapsed Lease runs nothing, its own clusters included
        (True, "me", True, "me", MINE),
        (True, "me", True, "peer", HAND_OVER),  # a replica joined that the cluster hashes to
        (True, "other", True, "me", ELSEWHERE),  # the owner hands it over when it sees the change, not before
        (True, "other", True, "other", ELSEWHERE),
        (True, "", False, "me", UNOWNED),
        (True, "", False, "peer", FOR_PEER),  # a new cluster is claimed by its chosen replica alone
        (True, "gone", False, "me", ORPHANED),  # its owner's Lease ran out
        (True, "gone", False, "peer", FOR_PEER),
    ],
)
def test_whose_a_cluster_is(valid, owner, owner_alive, successor, expected):
    assert ownership("me", valid, owner, owner_alive, successor) == expected
