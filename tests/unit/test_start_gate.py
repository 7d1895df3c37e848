"""The bound on Ray pods starting at once on a node as the operator and its autoscalers share it: the places a gate
leaves, how long a claim counts, and claims made together never past the bound."""

import threading
import time
from dataclasses import replace

import pytest

from autoscaler_bridge import start_gate
from autoscaler_bridge.start_gate import CLAIM_LAG_SECONDS, CLAIM_SECONDS, Gate

NOW = 1000.0


@pytest.mark.parametrize(
    ("gate", "wanted", "admitted"),
    [
        (Gate(bound=3, starting=0, counted_at=NOW), 5, 3),
        (Gate(bound=3, starting=2, counted_at=NOW), 5, 1),
        (Gate(bound=3, starting=3, counted_at=NOW), 1, 0),
        (Gate(bound=3, starting=5, counted_at=NOW), 1, 0),  # past the bound (claims of another replica): none
        (Gate(bound=0, starting=9, counted_at=NOW), 4, 4),  # no bound
        (Gate(bound=3, starting=0, counted_at=NOW, claims=((NOW - 1, 2),)), 5, 1),  # a claim the count may not hold
        # A claim older than the count by more than the watch's lag: its pods are counted already.
        (Gate(bound=3, starting=2, counted_at=NOW, claims=((NOW - CLAIM_LAG_SECONDS - 0.1, 2),)), 5, 1),
        # A claim past CLAIM_SECONDS counts no more, though no count came since (the operator is gone).
        (Gate(bound=3, starting=0, counted_at=NOW - CLAIM_SECONDS, claims=((NOW - CLAIM_SECONDS, 3),)), 5, 3),
    ],
)
def test_a_gate_admits_what_the_bound_leaves_of_the_pods_starting_and_claimed(gate, wanted, admitted):
    assert gate.admitted(wanted, NOW) == admitted


def test_without_a_gate_file_nothing_is_bounded(tmp_path):
    assert start_gate.claim(None, 4)[:2] == (4, 0)
    assert start_gate.claim(tmp_path / "none", 4)[:2] == (4, 0)
    assert start_gate.claimed(tmp_path / "none") == 0
    assert not (tmp_path / "none").exists()  # a node provider never makes it


def test_claims_count_until_a_count_holds_their_pods(tmp_path):
    path = tmp_path / "gate"
    start_gate.publish(path, bound=3, starting=1, counted_at=time.monotonic())
    assert start_gate.claim(path, 5)[:2] == (2, 1)
    assert start_gate.claimed(path) == 2
    assert start_gate.claim(path, 1)[:2] == (0, 3)
    # The operator's next count holds the two pods made (and one more, made by another replica).
    start_gate.publish(path, bound=3, starting=3, counted_at=time.monotonic() + CLAIM_LAG_SECONDS + 0.1)
    assert start_gate.claimed(path) == 0
    assert start_gate.claim(path, 1)[:2] == (0, 3)
    start_gate.publish(path, bound=3, starting=0, counted_at=time.monotonic())
    assert start_gate.claim(path, 1)[:2] == (1, 0)


def test_the_operator_claims_against_its_own_fresh_count(tmp_path):
    """A head's place: claimed against the count made just now, with the autoscalers' claims since the last count."""
    path = tmp_path / "gate"
    assert start_gate.claim(path, 1, counted=(3, 1))[:2] == (1, 1)  # the operator may make the file
    assert start_gate.claim(path, 2)[:2] == (1, 2)  # a node provider: its head's claim counts
    assert start_gate.claim(path, 1, counted=(3, 1))[:2] == (0, 3)  # the claims are not in the count yet
    start_gate.publish(path, bound=3, starting=2, counted_at=time.monotonic() + CLAIM_LAG_SECONDS + 0.1)
    assert start_gate.claim(path, 1, counted=(3, 2))[:2] == (1, 2)


def test_claims_made_together_never_pass_the_bound(tmp_path):
    """Many autoscalers' providers claiming at once, each through its own open file: the lock lets exactly the
    bound's places go."""
    path = tmp_path / "gate"
    start_gate.publish(path, bound=5, starting=1, counted_at=time.monotonic())
    granted: list[int] = []
    ready = threading.Barrier(16)

    def provider() -> None:
        ready.wait(timeout=10)
        for _ in range(3):
            granted.append(start_gate.claim(path, 1)[0])

    threads = [threading.Thread(target=provider) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(granted) == 4 and len(granted) == 48


def test_an_unreadable_gate_bounds_nothing(tmp_path):
    path = tmp_path / "gate"
    path.write_text("not json")
    assert start_gate.claim(path, 2)[:2] == (2, 0)
    start_gate.publish(path, bound=1, starting=1, counted_at=time.monotonic())  # the operator's count replaces it
    assert start_gate.claim(path, 2)[:2] == (0, 1)


def test_a_claim_may_leave_places_free():
    """The operator's heads leave one place for the workers of clusters running already."""
    gate = Gate(bound=3, starting=1, counted_at=NOW)
    assert gate.admitted(1, NOW, keep=1) == 1
    assert replace(gate, starting=2).admitted(1, NOW, keep=1) == 0
    assert replace(gate, starting=2).admitted(1, NOW) == 1


def test_a_withdrawn_claim_frees_its_places_at_once(tmp_path):
    """The pods a claim was for were not made (the API refused them): its places are free again before any count."""
    path = tmp_path / "gate"
    start_gate.publish(path, bound=3, starting=0, counted_at=time.monotonic())
    first, second = start_gate.claim(path, 2), start_gate.claim(path, 1)
    assert start_gate.claim(path, 1)[:2] == (0, 3)
    start_gate.withdraw(path, first, 1)  # one of its two pods made
    assert start_gate.claimed(path) == 2
    start_gate.withdraw(path, second, 1)
    assert start_gate.claimed(path) == 1
    assert start_gate.claim(path, 5)[:2] == (2, 1)
    start_gate.withdraw(None, first, 1)  # no gate: nothing to free
