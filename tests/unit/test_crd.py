"""The canonical CRD: valid, structural, and its schema accepts the examples and refuses broken ones.

The schema is checked with a JSON-schema validator (a Kubernetes structural
schema is a subset of OpenAPI v3 / JSON schema). Its CEL rules
(x-kubernetes-validations) are not evaluated here: the same rules are enforced
by the operator's Python validation, tested in test_validation.py.
"""

import copy

import jsonschema
import pytest

from tests.harness.files import CRD_FILE, load_yaml


@pytest.fixture(scope="module")
def crd():
    return load_yaml(CRD_FILE)


@pytest.fixture(scope="module")
def schema(crd):
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_identity_of_the_legacy_api(crd):
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == "rayclusters.cluster.ray.io"
    spec = crd["spec"]
    assert spec["group"] == "cluster.ray.io" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "RayCluster"
    assert spec["names"]["plural"] == "rayclusters" and spec["names"]["singular"] == "raycluster"
    [version] = spec["versions"]
    assert version["name"] == "v1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


def test_printer_columns_show_status_and_restarts(crd):
    columns = {c["name"]: c for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Status"]["jsonPath"] == ".status.phase"
    assert columns["Restarts"] == {**columns["Restarts"], "type": "integer", "jsonPath": ".status.autoscalerRetries"}
    assert columns["Age"]["jsonPath"] == ".metadata.creationTimestamp"
    assert columns["Workers"]["jsonPath"] == ".status.readyWorkers"
    assert columns["Desired"]["jsonPath"] == ".status.desiredWorkers"


def _unstructural_paths(node, path="openAPIV3Schema"):
    """Paths of schema nodes that break Kubernetes' structural-schema rule: every node has a type."""
    problems = []
    if not (
        node.get("type") or node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
    ):
        problems.append(path)
    for name, child in (node.get("properties") or {}).items():
        problems += _unstructural_paths(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        problems += _unstructural_paths(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        problems += _unstructural_paths(node["additionalProperties"], f"{path}{{}}")
    return problems


def test_schema_is_structural(schema):
    assert _unstructural_paths(schema) == []


def test_status_fields_are_declared(schema):
    # Undeclared status fields would be pruned silently by the API server.
    status = schema["properties"]["status"]["properties"]
    assert status["phase"]["enum"] == ["Updating", "Running", "AutoscalingExceptionRecovery", "Error"]
    for field in (
        "autoscalerRetries",
        "message",
        "observedGeneration",
        "conditions",
        "podTypes",
        "lastUpdateTime",
        "readyWorkers",
        "desiredWorkers",
    ):
        assert field in status


def test_schema_accepts_every_example(schema, example_raycluster):
    jsonschema.validate(example_raycluster, schema)


def test_cel_rules_are_present(schema):
    spec = schema["properties"]["spec"]
    assert "self.podTypes.exists(p, p.name == self.headPodType)" in [
        r["rule"] for r in spec["x-kubernetes-validations"]
    ]
    pod_type = spec["properties"]["podTypes"]["items"]
    assert any("minWorkers <= self.maxWorkers" in r["rule"] for r in pod_type["x-kubernetes-validations"])
    # Unique podType names: a list of type map keyed by name.
    assert spec["properties"]["podTypes"]["x-kubernetes-list-type"] == "map"
    assert spec["properties"]["podTypes"]["x-kubernetes-list-map-keys"] == ["name"]


def _break(raycluster, change):
    broken = copy.deepcopy(raycluster)
    change(broken)
    return broken


BROKEN = {
    "missing headPodType": lambda rc: rc["spec"].pop("headPodType"),
    "missing podTypes": lambda rc: rc["spec"].pop("podTypes"),
    "empty podTypes": lambda rc: rc["spec"].update(podTypes=[]),
    "negative minWorkers": lambda rc: rc["spec"]["podTypes"][0].update(minWorkers=-1),
    "string maxWorkers": lambda rc: rc["spec"]["podTypes"][0].update(maxWorkers="3"),
    "non-numeric rayResources": lambda rc: rc["spec"]["podTypes"][0].update(rayResources={"a": "abc"}),
    "podType without podConfig": lambda rc: rc["spec"]["podTypes"][0].pop("podConfig"),
    "podType without a container": lambda rc: rc["spec"]["podTypes"][0]["podConfig"]["spec"].update(containers=[]),
    "podType without name": lambda rc: rc["spec"]["podTypes"][0].pop("name"),
    "negative upscalingSpeed": lambda rc: rc["spec"].update(upscalingSpeed=-1),
    "unknown phase": lambda rc: rc.update(status={"phase": "Exploded"}),
    "start commands not a list": lambda rc: rc["spec"].update(headStartRayCommands="ray start --head"),
    "service port out of range": lambda rc: rc["spec"].update(headServicePorts=[{"name": "x", "port": 70000}]),
}


@pytest.mark.parametrize("change", BROKEN.values(), ids=BROKEN.keys())
def test_schema_refuses_broken_rayclusters(schema, example_raycluster, change):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_break(example_raycluster, change), schema)
