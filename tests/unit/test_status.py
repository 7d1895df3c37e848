"""The status a RayCluster is given, as the merge patches that write it."""

from __future__ import annotations

import pytest

from ray_operator.status import merge_patch_of


@pytest.mark.parametrize(
    "old, new, patch",
    [
        (None, {"mode": "token"}, {"mode": "token"}),
        (
            {"mode": "token", "secretName": "s", "submitJob": "c"},
            {"mode": "disabled"},
            {"secretName": None, "submitJob": None, "mode": "disabled"},
        ),
        ({"a": {"b": 1, "c": 2}}, {"a": {"b": 1}}, {"a": {"c": None, "b": 1}}),
        ("Running", "Error", "Error"),
        ([{"name": "w", "desired": 1}], [], []),  # lists are replaced whole
    ],
)
def test_a_merge_patch_removes_what_went(old, new, patch):
    assert merge_patch_of(old, new) == patch
