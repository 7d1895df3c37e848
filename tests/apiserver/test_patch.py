"""PATCH: JSON merge patch, JSON patch, strategic merge patch, server-side apply."""

import pytest

from tests.harness.api import apply_crd, raw_request
from tests.apiserver.test_objects import RC

JSON_PATCH = "application/json-patch+json"

POD = {
    "metadata": {"name": "p"},
    "spec": {
        "containers": [
            {"name": "a", "image": "img:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "img:1"},
        ]
    },
}


def test_strategic_merge_patch_merges_containers_by_name(core):
    core.create_namespaced_pod("default", POD)
    patched = core.patch_namespaced_pod("p", "default", {"spec": {"containers": [{"name": "b", "image": "img:2"}]}})
    assert [(c.name, c.image) for c in patched.spec.containers] == [("a", "img:1"), ("b", "img:2")]
    assert patched.spec.containers[0].env[0].value == "1"


def test_strategic_merge_patch_delete_directive_and_set_lists(core):
    owner = core.create_namespaced_config_map(
        "default", {"metadata": {"name": "o"}}
    ).metadata.uid  # (an absent one: collected)
    core.create_namespaced_config_map(
        "default",
        {
            "metadata": {
                "name": "cm",
                "finalizers": ["a/x"],
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": owner}],
            }
        },
    )
    patched = core.patch_namespaced_config_map(
        "cm", "default", {"metadata": {"finalizers": ["b/y"], "ownerReferences": [{"uid": owner, "$patch": "delete"}]}}
    )
    assert patched.metadata.finalizers == ["b/y", "a/x"]  # a new item goes first
    assert patched.metadata.owner_references is None


@pytest.mark.parametrize(
    "before, patch, after",
    [
        (["a/1", "c/3"], ["b/2"], ["b/2", "a/1", "c/3"]),
        (["a/1", "c/3"], ["c/3", "b/2"], ["a/1", "c/3", "b/2"]),
        (["x/9"], ["b/2", "a/1"], ["b/2", "a/1", "x/9"]),
        (["a/1", "b/2", "c/3"], ["b/2"], ["a/1", "b/2", "c/3"]),
    ],
)
def test_strategic_merge_patch_orders_a_merged_list_as_kubernetes_does(core, before, patch, after):
    core.create_namespaced_config_map("default", {"metadata": {"name": "cm", "finalizers": before}})
    assert (
        core.patch_namespaced_config_map("cm", "default", {"metadata": {"finalizers": patch}}).metadata.finalizers
        == after
    )
    core.patch_namespaced_config_map("cm", "default", {"metadata": {"finalizers": None}})


def test_json_merge_patch_replaces_lists_and_null_deletes(kube, custom):
    apply_crd(kube)
    args = ("cluster.ray.io", "v1", "default", "rayclusters", "c1")
    custom.create_namespaced_custom_object(
        *args[:4], {**RC, "metadata": {"name": "c1", "labels": {"a": "1", "b": "2"}}}
    )
    patched = custom.patch_namespaced_custom_object(
        *args, {"metadata": {"labels": {"a": None}}, "spec": {"maxWorkers": 2}}
    )
    assert patched["metadata"]["labels"] == {"b": "2"} and patched["spec"]["maxWorkers"] == 2


def test_json_patch(api_server, core):
    core.create_namespaced_config_map("default", {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    path = "/api/v1/namespaces/default/configmaps/cm"
    status, _ = raw_request(
        api_server,
        "PATCH",
        path,
        [{"op": "add", "path": "/data/b", "value": "2"}, {"op": "remove", "path": "/data/a"}],
        JSON_PATCH,
    )
    assert status == 200 and core.read_namespaced_config_map("cm", "default").data == {"b": "2"}
    status, body = raw_request(api_server, "PATCH", path, [{"op": "test", "path": "/data/b", "value": "9"}], JSON_PATCH)
    assert status == 422 and body["kind"] == "Status"


def test_strategic_merge_patch_is_refused_for_custom_resources(api_server, kube, custom):
    apply_crd(kube)
    custom.create_namespaced_custom_object("cluster.ray.io", "v1", "default", "rayclusters", RC)
    status, body = raw_request(
        api_server,
        "PATCH",
        "/apis/cluster.ray.io/v1/namespaces/default/rayclusters/c1",
        {"spec": {"maxWorkers": 1}},
        "application/strategic-merge-patch+json",
    )
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")


@pytest.mark.known_difference("server-side apply without field ownership: a field its manager stopped applying stays")
def test_server_side_apply_removes_what_its_manager_stopped_applying(kubectl, core):
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\ndata:\n  a: '1'\n  b: '2'\n"
    kubectl("apply", "--server-side", "--field-manager", "m", "-f", "-", input=manifest)
    kubectl("apply", "--server-side", "--field-manager", "m", "-f", "-", input=manifest.replace("  b: '2'\n", ""))
    assert core.read_namespaced_config_map("owned", "default").data == {"a": "1"}


def test_kubectl_apply_client_and_server_side(kubectl, core):
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: '1'\n"
    assert "created" in kubectl("apply", "-f", "-", input=manifest).stdout
    assert "configured" in kubectl("apply", "-f", "-", input=manifest.replace("'1'", "'2'")).stdout
    assert "unchanged" in kubectl("apply", "-f", "-", input=manifest.replace("'1'", "'2'")).stdout
    assert core.read_namespaced_config_map("applied", "default").data == {"a": "2"}
    server_side = manifest.replace("applied", "ssa").replace("'1'", "'3'")
    assert "serverside-applied" in kubectl("apply", "--server-side", "-f", "-", input=server_side).stdout
    assert core.read_namespaced_config_map("ssa", "default").data == {"a": "3"}
    kubectl("apply", "--server-side", "-f", "-", input=server_side.replace("'3'", "'4'"))
    assert core.read_namespaced_config_map("ssa", "default").data == {"a": "4"}
