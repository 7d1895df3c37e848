"""What the operator's caches keep of a RayCluster: whole where the replica runs it or may claim it, else only whose
it is and its phase."""

from __future__ import annotations

import pytest

from ray_operator.cluster_objects import raycluster_as_read_by

SPEC = {"headPodType": "head", "podTypes": [{"name": "head", "podConfig": {"spec": {"containers": []}}}]}
METADATA = {"name": "c", "namespace": "ray", "uid": "u", "resourceVersion": "7", "generation": 2}


def raycluster(owner: object) -> dict:
    status: dict[str, object] = {"phase": "Running", "message": "", "autoscaler": {"nodes": []}}
    if owner is not None:
        status["operator"] = owner
    managed = {"managedFields": [{"manager": "kubectl"}]}
    return {
        "apiVersion": "cluster.ray.io/v1",
        "kind": "RayCluster",
        "metadata": {**METADATA, **managed},
        "spec": SPEC,
        "status": status,
    }


@pytest.mark.parametrize(
    ("owner", "whole"),
    [
        ({"identity": "me", "lease": "me"}, True),  # this replica runs it
        (None, True),  # nobody does yet: this replica may claim it
        ({"identity": "", "lease": ""}, True),
        ("garbage", True),  # not an owner the operator reads: unowned, as ray_operator.cluster_controller reads it
        ({"identity": "peer", "lease": "peer"}, False),  # another runs it: its spec is read once it is this one's
    ],
)
def test_a_raycluster_is_kept_whole_only_where_it_may_run(owner, whole):
    kept = raycluster_as_read_by("me")(raycluster(owner))
    assert "managedFields" not in kept["metadata"] and kept["metadata"] == METADATA
    if whole:
        assert kept["spec"] == SPEC and kept["status"]["autoscaler"] == {"nodes": []}
    else:
        assert "spec" not in kept and kept["status"] == {"phase": "Running", "operator": owner}
