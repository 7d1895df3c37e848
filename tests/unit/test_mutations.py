"""The operator's reading of a RayCluster against hostile mutations of one (bench.mutations, seeded): whatever a
RayCluster holds, its derivation ends in a config or in listed problems, never in another exception."""

from __future__ import annotations

import pytest

from autoscaler_bridge.cluster_config import autoscaler_config
from autoscaler_bridge.validation import InvalidRayCluster
from bench.mutations import mutations
from ray_operator.helm_values import raycluster_from_values
from tests.harness.files import CRD_FILE, ROOT, load_yaml

EXAMPLE = raycluster_from_values(load_yaml(ROOT / "values/cpu-only.yaml"), "fz", "fuzz")
SCHEMA = load_yaml(CRD_FILE)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_mutations_are_seeded_and_each_changes_the_raycluster():
    first = [(m.path, m.what) for m in mutations(EXAMPLE, SCHEMA, seed=7, count=50)]
    assert first == [(m.path, m.what) for m in mutations(EXAMPLE, SCHEMA, seed=7, count=50)]
    assert len(set(first)) > 30
    assert all(m.raycluster != EXAMPLE for m in mutations(EXAMPLE, SCHEMA, seed=7, count=50) if m.what != "set '1'")


@pytest.mark.parametrize("seed", range(4))
def test_any_mutation_ends_in_a_config_or_listed_problems(seed):
    outcomes = {"config": 0, "problems": 0}
    for mutation in mutations(EXAMPLE, SCHEMA, seed=seed, count=250):
        try:
            autoscaler_config(mutation.raycluster)
            outcomes["config"] += 1
        except InvalidRayCluster as invalid:
            assert invalid.problems and all(len(str(p)) < 1100 for p in invalid.problems), (
                mutation.path,
                mutation.what,
            )
            outcomes["problems"] += 1
    assert outcomes["problems"] > 100 and outcomes["config"] > 0, outcomes
