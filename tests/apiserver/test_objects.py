"""Object metadata and the write rules: uid, timestamps, generation, resourceVersion, conflicts, names, status split."""

import json

import pytest
from kubernetes.client.exceptions import ApiException

from tests.harness.api import apply_crd, urlopen


def status_of(error: ApiException) -> dict:
    return json.loads(error.body or "null")


def raises(call, *args, **kwargs) -> dict:
    with pytest.raises(ApiException) as raised:
        call(*args, **kwargs)
    body = status_of(raised.value)
    assert body["kind"] == "Status" and body["status"] == "Failure" and body["code"] == raised.value.status
    return body


RC = {
    "apiVersion": "cluster.ray.io/v1",
    "kind": "RayCluster",
    "metadata": {"name": "c1"},
    "spec": {
        "headPodType": "head",
        "podTypes": [{"name": "head", "maxWorkers": 0, "podConfig": {"spec": {"containers": [{"name": "ray-node"}]}}}],
    },
}


def test_metadata_set_by_the_server(core):
    created = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}, "data": {"k": "v"}})
    assert len(created.metadata.uid) == 36 and created.metadata.creation_timestamp is not None
    other = core.create_namespaced_config_map("default", {"metadata": {"name": "b"}})
    assert int(other.metadata.resource_version) > int(created.metadata.resource_version)
    assert core.read_namespaced_config_map("a", "default").metadata.uid == created.metadata.uid


def test_generate_name(core):
    first = core.create_namespaced_config_map("default", {"metadata": {"generateName": "job-"}})
    second = core.create_namespaced_config_map("default", {"metadata": {"generateName": "job-"}})
    assert first.metadata.name.startswith("job-") and len(first.metadata.name) == len("job-") + 5
    assert first.metadata.name != second.metadata.name
    body = raises(core.create_namespaced_config_map, "default", {"metadata": {}})
    assert body["reason"] == "Invalid" and "name or generateName is required" in body["message"]


def test_already_exists_and_not_found(core):
    core.create_namespaced_config_map("default", {"metadata": {"name": "dup"}})
    body = raises(core.create_namespaced_config_map, "default", {"metadata": {"name": "dup"}})
    assert (body["code"], body["reason"], body["message"]) == (409, "AlreadyExists", 'configmaps "dup" already exists')
    assert body["details"] == {"name": "dup", "kind": "configmaps"}
    body = raises(core.read_namespaced_config_map, "missing", "default")
    assert (body["code"], body["reason"], body["message"]) == (404, "NotFound", 'configmaps "missing" not found')
    body = raises(core.create_namespaced_config_map, "nowhere", {"metadata": {"name": "x"}})
    assert (body["code"], body["message"]) == (404, 'namespaces "nowhere" not found')


def test_stale_resource_version_conflicts(core):
    created = core.create_namespaced_config_map("default", {"metadata": {"name": "cm"}, "data": {"v": "1"}})
    stale = created.metadata.resource_version
    core.replace_namespaced_config_map(
        "cm", "default", {"metadata": {"name": "cm", "resourceVersion": stale}, "data": {"v": "2"}}
    )
    body = raises(
        core.replace_namespaced_config_map,
        "cm",
        "default",
        {"metadata": {"name": "cm", "resourceVersion": stale}, "data": {"v": "3"}},
    )
    assert (body["code"], body["reason"]) == (409, "Conflict")
    assert "the object has been modified; please apply your changes to the latest version" in body["message"]
    # A merge patch carrying the stale version is refused too.
    body = raises(
        core.patch_namespaced_config_map, "cm", "default", {"metadata": {"resourceVersion": stale}, "data": {"v": "4"}}
    )
    assert body["reason"] == "Conflict"
    assert core.read_namespaced_config_map("cm", "default").data == {"v": "2"}


def test_custom_resources_need_a_resource_version_to_update(kube, custom):
    apply_crd(kube)
    custom.create_namespaced_custom_object("cluster.ray.io", "v1", "default", "rayclusters", RC)
    body = raises(custom.replace_namespaced_custom_object, "cluster.ray.io", "v1", "default", "rayclusters", "c1", RC)
    assert body["reason"] == "Invalid" and "must be specified for an update" in body["message"]


def test_generation_moves_with_spec_only_and_no_op_writes_change_nothing(kube, custom):
    apply_crd(kube)
    args = ("cluster.ray.io", "v1", "default", "rayclusters", "c1")
    created = custom.create_namespaced_custom_object(*args[:4], RC)
    assert created["metadata"]["generation"] == 1
    labelled = custom.patch_namespaced_custom_object(*args, {"metadata": {"labels": {"a": "b"}}})
    assert labelled["metadata"]["generation"] == 1
    status = custom.patch_namespaced_custom_object_status(*args, {"status": {"phase": "Running"}})
    assert status["metadata"]["generation"] == 1
    changed = custom.patch_namespaced_custom_object(*args, {"spec": {"maxWorkers": 3}})
    assert changed["metadata"]["generation"] == 2
    same = custom.patch_namespaced_custom_object(*args, {"spec": {"maxWorkers": 3}})
    assert same["metadata"]["resourceVersion"] == changed["metadata"]["resourceVersion"]


def test_status_subresource_split(kube, custom):
    apply_crd(kube)
    args = ("cluster.ray.io", "v1", "default", "rayclusters", "c1")
    created = custom.create_namespaced_custom_object(*args[:4], {**RC, "status": {"phase": "Running"}})
    assert "status" not in created  # status is not taken on create
    main = custom.patch_namespaced_custom_object(*args, {"spec": {"maxWorkers": 1}, "status": {"phase": "Error"}})
    assert "status" not in main and main["spec"]["maxWorkers"] == 1
    status = custom.patch_namespaced_custom_object_status(
        *args, {"spec": {"maxWorkers": 9}, "status": {"phase": "Running"}}
    )
    assert status["status"] == {"phase": "Running"} and status["spec"]["maxWorkers"] == 1
    current = custom.get_namespaced_custom_object(*args)
    replaced = custom.replace_namespaced_custom_object_status(
        *args, {**current, "status": {"phase": "Updating"}, "metadata": {**current["metadata"], "labels": {"x": "y"}}}
    )
    assert replaced["status"] == {"phase": "Updating"} and "labels" not in replaced["metadata"]


def test_invalid_names_and_labels(core):
    body = raises(core.create_namespaced_config_map, "default", {"metadata": {"name": "Bad_Name"}})
    assert body["code"] == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    assert 'metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain' in body["message"]
    body = raises(core.create_namespaced_config_map, "default", {"metadata": {"name": "ok", "labels": {"a": "x" * 64}}})
    assert body["reason"] == "Invalid" and body["details"]["causes"][0]["field"] == "metadata.labels"
    # A Service's name is an RFC 1123 label since Kubernetes 1.34 (it may start with a digit), never with dots.
    assert core.create_namespaced_service("default", {"metadata": {"name": "1svc"}, "spec": {"ports": [{"port": 80}]}})
    body = raises(
        core.create_namespaced_service, "default", {"metadata": {"name": "svc.a"}, "spec": {"ports": [{"port": 80}]}}
    )
    assert 'metadata.name: Invalid value: "svc.a": must not contain dots' in body["message"]
    body = raises(
        core.create_namespaced_service, "default", {"metadata": {"name": "Svc"}, "spec": {"ports": [{"port": 80}]}}
    )
    assert "a lowercase RFC 1123 label" in body["message"]


def test_pods_get_defaults_and_need_their_service_account(core):
    pod = core.create_namespaced_pod(
        "default", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    )
    assert pod.status.phase == "Pending" and pod.spec.restart_policy == "Always"
    assert pod.spec.service_account_name == "default" and pod.spec.termination_grace_period_seconds == 30
    assert pod.spec.containers[0].image_pull_policy == "Always"
    body = raises(
        core.create_namespaced_pod,
        "default",
        {
            "metadata": {"name": "q"},
            "spec": {"serviceAccountName": "nobody", "containers": [{"name": "c", "image": "busybox:1"}]},
        },
    )
    assert (body["code"], body["reason"]) == (403, "Forbidden") and 'serviceaccount "nobody" not found' in body[
        "message"
    ]
    body = raises(
        core.create_namespaced_pod, "default", {"metadata": {"name": "r"}, "spec": {"containers": [{"name": "c"}]}}
    )
    assert body["reason"] == "Invalid" and "spec.containers[0].image: Required value" in body["message"]
    body = raises(core.patch_namespaced_pod, "p", "default", {"spec": {"restartPolicy": "Never"}})
    assert body["reason"] == "Invalid" and "pod updates may not change fields" in body["message"]
    assert (
        core.patch_namespaced_pod("p", "default", {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}})
        .spec.containers[0]
        .image
        == "busybox:2"
    )


def test_resource_quantities(core):
    """A quantity that does not parse fails decoding (400); a negative one is invalid (422), and requests
    default to the limits, so both are named."""

    def pod(name, cpu):
        return {
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "i:1", "resources": {"limits": {"cpu": cpu}}}]},
        }

    for bad in ("abc", "1.5.5", "1Gb"):
        body = raises(core.create_namespaced_pod, "default", pod("bad", bad))
        assert (body["code"], body["reason"]) == (400, "BadRequest")
        assert body["message"] == (
            'Pod in version "v1" cannot be handled as a Pod: quantities must match the regular '
            "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        )
    body = raises(core.create_namespaced_pod, "default", pod("negative", "-1"))
    assert (body["code"], body["reason"]) == (422, "Invalid")
    assert [c["field"] for c in body["details"]["causes"]] == [
        "spec.containers[0].resources.limits[cpu]",
        "spec.containers[0].resources.requests[cpu]",
    ]
    created = core.create_namespaced_pod("default", pod("fine", "500m"))
    assert created.spec.containers[0].resources.requests == {"cpu": "500m"}


def test_services_get_a_cluster_ip_that_is_immutable(core):
    service = core.create_namespaced_service(
        "default", {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}], "selector": {"a": "b"}}}
    )
    assert service.spec.cluster_ip.startswith("10.96.") and service.spec.type == "ClusterIP"
    assert service.spec.ports[0].target_port == 80 and service.spec.ports[0].protocol == "TCP"
    body = raises(core.patch_namespaced_service, "s", "default", {"spec": {"clusterIP": "10.96.9.9"}})
    assert body["reason"] == "Invalid"
    assert 'spec.clusterIPs[0]: Invalid value: ["10.96.9.9"]: may not change once set' in body["message"]


def test_secrets_string_data_and_base64(core):
    secret = core.create_namespaced_secret(
        "default", {"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}}
    )
    assert secret.data == {"password": "aHVudGVyMg=="} and secret.type == "Opaque" and secret.string_data is None
    body = raises(core.create_namespaced_secret, "default", {"metadata": {"name": "t"}, "data": {"x": "not base64!"}})
    assert body["code"] == 400


def test_creating_in_a_terminating_namespace_is_forbidden(core):
    core.create_namespace({"metadata": {"name": "doomed"}})
    core.create_namespaced_config_map("doomed", {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
    core.delete_namespace("doomed")
    assert core.read_namespace("doomed").status.phase == "Terminating"
    body = raises(core.create_namespaced_config_map, "doomed", {"metadata": {"name": "new"}})
    assert (body["code"], body["reason"]) == (403, "Forbidden") and "because it is being terminated" in body["message"]


def test_unsupported_media_type(api_server):
    import urllib.request

    request = urllib.request.Request(
        api_server.url + "/api/v1/namespaces/default/configmaps/x",
        method="PATCH",
        data=b"{}",
        headers={"Content-Type": "text/plain"},
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urlopen(api_server, request)
    body = json.loads(raised.value.read())
    assert (raised.value.code, body["reason"]) == (415, "UnsupportedMediaType")


def test_builtin_objects_are_checked_against_the_kubernetes_schemas(api_server, core, kubectl):
    """A decode error names the field (the real server as a Go struct field, this one by its JSON path)."""
    from tests.harness.api import raw_request

    status, body = raw_request(
        api_server,
        "POST",
        "/api/v1/namespaces/default/pods",
        {
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i:1", "ports": [{"containerPort": "http"}]}]},
        },
    )
    assert (status, body["reason"]) == (400, "BadRequest")
    assert body["message"].startswith('Pod in version "v1" cannot be handled as a Pod:')
    assert "containerPort" in body["message"]
    status, body = raw_request(
        api_server,
        "POST",
        "/api/v1/namespaces/default/services",
        {"metadata": {"name": "s"}, "spec": {"ports": [{"name": "x"}]}},
    )
    assert (status, body["reason"]) == (422, "Invalid")
    assert "spec.ports[0].port" in [
        c["field"] for c in body["details"]["causes"]
    ]  # the real server: "Invalid value: 0"
    # Unknown fields are dropped, with a warning; refused when the client asks for strict field validation.
    status, body = raw_request(
        api_server,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {"metadata": {"name": "u"}, "data": {"a": "1"}, "dta": {"b": "2"}},
    )
    assert status == 201 and "dta" not in body and core.read_namespaced_config_map("u", "default").data == {"a": "1"}
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: strict\ndta:\n  a: '1'\n"
    result = kubectl("apply", "-f", "-", input=manifest, check=False)
    assert result.returncode != 0 and 'unknown field "dta"' in result.stderr
