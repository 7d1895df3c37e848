"""Discovery, version and health: what clients read before anything else."""

import json
import urllib.request

import kubernetes
import pytest

from tests.apiserver.test_objects import RC
from tests.harness.api import apply_crd, urlopen
from tests.harness.waiting import wait_for


def get(api_server, path, accept="application/json"):
    request = urllib.request.Request(api_server.url + path, headers={"Accept": accept})
    with urlopen(api_server, request) as response:
        body = response.read()
        return response.status, response.headers.get("Content-Type"), body


def test_version_and_health(api_server):
    status, _, body = get(api_server, "/version")
    assert status == 200 and json.loads(body)["major"] == "1"
    for path in ("/healthz", "/readyz", "/livez"):
        assert get(api_server, path)[2] == b"ok"


def test_core_and_group_discovery(kube):
    versions = kubernetes.client.CoreApi(kube).get_api_versions()
    assert versions.versions == ["v1"]
    groups = {g.name: g for g in kubernetes.client.ApisApi(kube).get_api_versions().groups}
    for name in ("apps", "rbac.authorization.k8s.io", "coordination.k8s.io", "apiextensions.k8s.io", "events.k8s.io"):
        assert groups[name].preferred_version.version == "v1"
    resources = {r.name: r for r in kubernetes.client.CoreV1Api(kube).get_api_resources().resources}
    pods = resources["pods"]
    assert pods.namespaced and pods.kind == "Pod" and pods.short_names == ["po"] and "all" in pods.categories
    assert sorted(pods.verbs) == sorted(
        ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    )
    assert resources["pods/status"].verbs == ["get", "patch", "update"]
    assert {
        "pods/log",
        "namespaces",
        "services",
        "configmaps",
        "secrets",
        "serviceaccounts",
        "events",
    } <= resources.keys()
    assert not resources["namespaces"].namespaced


@pytest.mark.known_difference(
    "no aggregated discovery (apidiscovery.k8s.io/v2): clients fall back to one request per group"
)
def test_aggregated_discovery(api_server):
    status, content_type, body = get(
        api_server, "/apis", accept="application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    )
    assert status == 200 and json.loads(body)["kind"] == "APIGroupDiscoveryList"


def test_a_crd_serves_its_resource_and_deleting_it_stops_serving(kube, kubectl):
    apply_crd(kube)
    listing = kubectl("api-resources", "--api-group=cluster.ray.io").stdout
    assert "rayclusters" in listing and "rayc" in listing and "RayCluster" in listing
    crd = kubernetes.client.ApiextensionsV1Api(kube).read_custom_resource_definition("rayclusters.cluster.ray.io")
    assert {c.type: c.status for c in crd.status.conditions}["Established"] == "True"
    resources = kubernetes.client.CustomObjectsApi(kube).get_api_resources("cluster.ray.io", "v1").resources
    assert [r.name for r in resources] == ["rayclusters", "rayclusters/status"]
    kubectl("delete", "crd", "rayclusters.cluster.ray.io")
    wait_for(lambda: "rayclusters" not in kubectl("api-resources").stdout, message="rayclusters unserved")
    assert 'the server doesn\'t have a resource type "rayclusters"' in kubectl("get", "rayclusters", check=False).stderr


def test_short_names_resolve_as_on_a_real_server(kube, kubectl):
    """`rc` is core Kubernetes' ReplicationControllers; a RayCluster is `rayc`."""
    apply_crd(kube)
    kubernetes.client.CustomObjectsApi(kube).create_namespaced_custom_object(
        "cluster.ray.io", "v1", "default", "rayclusters", RC
    )
    result = kubectl("get", "rc")
    assert result.stdout == "" and "No resources found" in result.stderr
    assert kubectl("get", "rayc", "-o", "name").stdout.split() == ["raycluster.cluster.ray.io/c1"]


def test_openapi_v3_says_patch_takes_field_validation(api_server, kube):
    apply_crd(kube)
    paths = wait_for(
        lambda: (lambda p: p if "apis/cluster.ray.io/v1" in p else None)(
            json.loads(get(api_server, "/openapi/v3")[2])["paths"]
        ),
        message="the CRD's OpenAPI v3 document published",
    )
    assert {"api/v1", "apis/cluster.ray.io/v1"} <= paths.keys()
    _, _, body = get(api_server, paths["apis/cluster.ray.io/v1"]["serverRelativeURL"])
    doc = json.loads(body)
    patch = doc["paths"]["/apis/cluster.ray.io/v1/namespaces/{namespace}/rayclusters/{name}"]["patch"]
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "cluster.ray.io",
        "version": "v1",
        "kind": "RayCluster",
    }
