"""Custom resources against their CRD's schema and CEL rules: validation, pruning, defaults, field validation,
tables."""

import copy
import json

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from tests.harness.api import apply_crd
from tests.apiserver.test_objects import RC

ARGS = ("cluster.ray.io", "v1", "default", "rayclusters")


@pytest.fixture
def crd(kube):
    apply_crd(kube)


def refused(custom, body) -> dict:
    with pytest.raises(ApiException) as raised:
        custom.create_namespaced_custom_object(*ARGS, body)
    assert raised.value.status == 422
    status = json.loads(raised.value.body or "null")
    assert status["reason"] == "Invalid"
    return status


def with_spec(**changes):
    body = copy.deepcopy(RC)
    body["spec"].update(changes)
    return body


def test_types_enums_required_and_bounds(crd, custom):
    status = refused(custom, with_spec(maxWorkers="three", upscalingSpeed=-1))
    causes = status["details"]["causes"]
    assert sorted((c["reason"], c["field"]) for c in causes) == [  # in no fixed order on a real server
        ("FieldValueInvalid", "<nil>"),
        ("FieldValueInvalid", "spec.upscalingSpeed"),
        ("FieldValueTypeInvalid", "spec.maxWorkers"),
    ]  # <nil>: the CEL rules, not checked while the schema is not met
    assert "some validation rules were not checked because the object was invalid" in status["message"]
    assert (
        'spec.maxWorkers: Invalid value: "string": spec.maxWorkers in body must be of type integer: "string"'
        in status["message"]
    )
    assert (
        "spec.upscalingSpeed: Invalid value: -1: spec.upscalingSpeed in body should be greater than or equal to 0"
        in status["message"]
    )
    body = with_spec()
    del body["spec"]["headPodType"]
    assert refused(custom, body)["details"]["causes"][0] == {
        "reason": "FieldValueRequired",
        "field": "spec.headPodType",
        "message": "Required value",
    }
    body = with_spec(podTypes=[])
    assert "should have at least 1 items" in refused(custom, body)["message"]


def test_the_crds_cel_rules(crd, custom, kubectl):
    """x-kubernetes-validations: each rule on its own node, its failure at the rule's fieldPath."""
    body = with_spec(headPodType="nope", podTypes=[{**RC["spec"]["podTypes"][0], "minWorkers": 3, "maxWorkers": 1}])
    status = refused(custom, body)
    assert status["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "field": "spec.headPodType",
            "message": "Invalid value: headPodType must name one of the podTypes",
        },
        {
            "reason": "FieldValueInvalid",
            "field": "spec.podTypes[0].minWorkers",
            "message": "Invalid value: minWorkers must not exceed maxWorkers",
        },
    ]
    assert status["message"] == (
        'RayCluster.cluster.ray.io "c1" is invalid: [spec.headPodType: Invalid value: headPodType must name '
        "one of the podTypes, spec.podTypes[0].minWorkers: Invalid value: minWorkers must not exceed maxWorkers]"
    )
    result = kubectl("apply", "-f", "-", input=yaml.safe_dump(body), check=False)
    assert result.returncode != 0 and "minWorkers must not exceed maxWorkers" in result.stderr
    assert custom.create_namespaced_custom_object(*ARGS, with_spec())["metadata"]["name"] == "c1"  # a valid one passes


def test_status_enum_on_the_status_subresource(crd, custom):
    custom.create_namespaced_custom_object(*ARGS, RC)
    with pytest.raises(ApiException) as raised:
        custom.patch_namespaced_custom_object_status(*ARGS, "c1", {"status": {"phase": "Exploded"}})
    assert raised.value.status == 422
    message = json.loads(raised.value.body)["message"]
    assert (
        'Unsupported value: "Exploded": supported values: "Updating", "Running", "AutoscalingExceptionRecovery", '
        '"Error"' in message
    )


def test_list_map_keys_must_be_unique(crd, custom):
    pod_type = RC["spec"]["podTypes"][0]
    status = refused(custom, with_spec(podTypes=[pod_type, pod_type]))
    assert status["details"]["causes"][0]["reason"] == "FieldValueDuplicate"


def test_unknown_fields_are_pruned_unless_preserved(crd, custom):
    body = with_spec(unknownSpecField=1)
    body["spec"]["podTypes"][0]["podConfig"]["spec"]["anyPodField"] = {"kept": True}
    created = custom.create_namespaced_custom_object(*ARGS, body)
    assert "unknownSpecField" not in created["spec"]
    assert created["spec"]["podTypes"][0]["podConfig"]["spec"]["anyPodField"] == {"kept": True}
    status = custom.patch_namespaced_custom_object_status(
        *ARGS, "c1", {"status": {"phase": "Running", "notDeclared": 1}}
    )
    assert status["status"] == {"phase": "Running"}  # the legacy operator's silently dropped status fields


def test_schema_defaults_are_filled_in(kube, custom):
    crd = yaml.safe_load(open("crds/cluster.ray.io_rayclusters.yaml"))
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["upscalingSpeed"][
        "default"
    ] = 1.0

    apply_crd(kube, crd=crd)
    assert custom.create_namespaced_custom_object(*ARGS, RC)["spec"]["upscalingSpeed"] == 1.0


def test_kubectl_strict_field_validation(crd, kubectl):
    manifest = yaml.safe_dump({**RC, "spec": {**RC["spec"], "maxWorkrs": 3}})
    result = kubectl("apply", "-f", "-", input=manifest, check=False)
    assert result.returncode != 0 and 'unknown field "spec.maxWorkrs"' in result.stderr
    result = kubectl("apply", "--validate=false", "-f", "-", input=manifest)
    assert "created" in result.stdout


def test_kubectl_get_shows_the_printer_columns(crd, custom, kubectl):
    custom.create_namespaced_custom_object(*ARGS, RC)
    custom.patch_namespaced_custom_object_status(
        *ARGS, "c1", {"status": {"phase": "Running", "autoscalerRetries": 2, "readyWorkers": 1, "desiredWorkers": 3}}
    )
    header, row = kubectl("get", "rayclusters").stdout.splitlines()
    assert header.split() == ["NAME", "STATUS", "RESTARTS", "WORKERS", "DESIRED", "AGE"]
    assert row.split()[:5] == ["c1", "Running", "2", "1", "3"]
    wide = kubectl("get", "rayc", "-o", "wide").stdout.splitlines()[0].split()
    assert wide[-3:] == ["USAGE", "DEMAND", "MESSAGE"]  # the long one last
    assert kubectl("get", "raycluster", "c1", "-o", "jsonpath={.status.phase}").stdout == "Running"


def test_container_quantities_follow_kubernetes_pattern(crd, custom):
    """The Ray containers' (and every container's) resources are int-or-string quantities, as in a Pod."""
    body = copy.deepcopy(RC)
    spec = body["spec"]["podTypes"][0]["podConfig"]["spec"]
    spec["containers"][0]["resources"] = {"limits": {"cpu": "two", "memory": 1.5}, "requests": {"cpu": "500m"}}
    spec["initContainers"] = [{"name": "init", "resources": {"requests": {"memory": "1Gb"}}}]
    status = refused(custom, body)
    causes = status["details"]["causes"]
    fields = "spec.podTypes[0].podConfig.spec"
    assert {(c["reason"], c["field"]) for c in causes if c["field"] != "<nil>"} == {  # kube-apiserver repeats some
        ("FieldValueInvalid", f"{fields}.containers[0].resources.limits.cpu"),
        ("FieldValueInvalid", f"{fields}.initContainers[0].resources.requests.memory"),
        ("FieldValueTypeInvalid", f"{fields}.containers[0].resources.limits.memory"),
    }
    assert (
        f'{fields}.containers[0].resources.limits.memory: Invalid value: "number": {fields}.containers[0].resources'
        '.limits.memory in body must be of type integer,string: "number"'
    ) in status["message"]
    assert (
        f'{fields}.containers[0].resources.limits.cpu: Invalid value: "two": {fields}.containers[0].resources'
        ".limits.cpu in body should match '^(\\+|-)?"
    ) in status["message"]
    spec["containers"][0]["resources"] = {"limits": {"cpu": 2, "memory": "1.5Gi"}, "requests": {"cpu": "1e3"}}
    spec["initContainers"][0]["resources"] = {"claims": [{"name": "x"}]}  # what a quantity map is not, kept
    created = custom.create_namespaced_custom_object(*ARGS, body)
    assert created["spec"]["podTypes"][0]["podConfig"]["spec"]["initContainers"][0]["resources"] == {
        "claims": [{"name": "x"}]
    }


def test_a_rayclusters_name_is_bounded_by_a_cel_rule(crd, custom):
    """52 characters: the pod label value ray-<name>-worker must fit in 63."""
    body = copy.deepcopy(RC)
    body["metadata"]["name"] = "c" * 53
    status = refused(custom, body)
    assert [(c["reason"], c["field"]) for c in status["details"]["causes"]] == [("FieldValueInvalid", "<nil>")]
    assert "<nil>: Invalid value: a RayCluster's name may have at most 52 characters" in status["message"]
    body["metadata"]["name"] = "c" * 52
    assert custom.create_namespaced_custom_object(*ARGS, body)["metadata"]["name"] == "c" * 52
