"""The restart backoff (exponential, bounded, and half of it spread at random), and the places heads may take."""

from __future__ import annotations

import pytest

from ray_operator.settings import Settings

SETTINGS = Settings(restart_backoff_seconds=2.0, max_restart_backoff_seconds=60.0)


@pytest.mark.parametrize(
    ("failures", "spread", "delay"),
    [
        (1, 1.0, 2.0),  # the first failure: the base, at most
        (1, 0.0, 1.0),  # at least half of it
        (2, 1.0, 4.0),  # doubling with each failure in a row
        (3, 0.5, 6.0),  # 8 s: 4 fixed, 4 spread
        (10, 1.0, 60.0),  # bounded
        (10, 0.0, 30.0),
        (0, 1.0, 2.0),  # no failure yet counts as the first
    ],
)
def test_the_restart_delay_is_half_fixed_and_half_spread(failures: int, spread: float, delay: float) -> None:
    assert SETTINGS.restart_delay(failures, spread) == pytest.approx(delay)


@pytest.mark.parametrize(("bound", "head_places"), [(0, 0), (1, 1), (2, 1), (3, 2)])
def test_heads_leave_one_place_to_start_for_workers_when_there_are_two(bound: int, head_places: int) -> None:
    assert Settings(max_starting_pods=bound).head_places == head_places
