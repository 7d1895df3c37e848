"""Whose token Secret is whose: a leftover of an earlier RayCluster of ours is replaced, nobody else's is touched."""

from types import SimpleNamespace

import pytest

from ray_operator.auth_secret import _left_by_another

PROVIDER = {"owner": {"apiVersion": "cluster.ray.io/v1", "kind": "RayCluster", "name": "c", "uid": "new"}}


def secret(*owners: tuple[str, str, str]):
    references = [SimpleNamespace(api_version=a, kind=k, uid=u) for a, k, u in owners]
    return SimpleNamespace(metadata=SimpleNamespace(owner_references=references))


@pytest.mark.parametrize(
    "owners, left",
    [
        ([("cluster.ray.io/v1", "RayCluster", "old")], True),  # an earlier RayCluster of the same name: replaced
        ([("cluster.ray.io/v1", "RayCluster", "new")], False),  # this one's
        ([("ray.io/v1", "RayCluster", "kuberay")], False),  # KubeRay's <name>-ray-auth: never ours to delete
        ([], False),  # the user's own
    ],
)
def test_only_a_leftover_of_ours_is_replaced(owners, left):
    assert _left_by_another(secret(*owners), PROVIDER) is left
