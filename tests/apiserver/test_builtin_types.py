"""The built-in types operators, kubectl and Helm touch, each through the official client."""

import json

import kubernetes
import pytest

from tests.harness.api import raw_request
from tests.harness.waiting import wait_for


def test_core_events_with_field_selectors(core):
    core.create_namespaced_event(
        "default",
        {
            "metadata": {"name": "demo.1"},
            "involvedObject": {"kind": "RayCluster", "name": "demo", "namespace": "default"},
            "reason": "Invalid",
            "message": "spec.headPodType is required",
            "type": "Warning",
            "source": {"component": "ray-operator"},
        },
    )
    found = core.list_namespaced_event("default", field_selector="involvedObject.name=demo,reason=Invalid").items
    assert [e.message for e in found] == ["spec.headPodType is required"]
    assert core.list_namespaced_event("default", field_selector="involvedObject.name=other").items == []


def test_events_k8s_io(api_server, kube):
    """eventTime is a MicroTime: exactly six fractional digits. (The official client, v37, re-serializes time
    strings through datetime.isoformat(), which drops a zero fraction, so these Events are sent raw.)"""
    event = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "e1"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "ray-operator",
        "reportingInstance": "op-1",
        "action": "Validate",
        "reason": "Invalid",
        "type": "Warning",
        "regarding": {"kind": "RayCluster", "name": "demo", "namespace": "default"},
        "note": "bad",
    }
    path = "/apis/events.k8s.io/v1/namespaces/default/events"
    assert raw_request(api_server, "POST", path, event)[0] == 201
    events = kubernetes.client.EventsV1Api(kube)
    assert [e.note for e in events.list_namespaced_event("default", field_selector="regarding.name=demo").items] == [
        "bad"
    ]
    status, body = raw_request(
        api_server, "POST", path, {**event, "metadata": {"name": "e2"}, "eventTime": "2026-01-01T00:00:00Z"}
    )
    assert (status, body["reason"]) == (400, "BadRequest")
    assert body["message"].startswith(
        'Event in version "v1" cannot be handled as a Event: parsing time "2026-01-01T00:00:00Z"'
    )


@pytest.mark.known_difference("core/v1 and events.k8s.io/v1 Events are stored apart, not one object seen two ways")
def test_a_core_event_is_also_an_events_k8s_io_event(api_server, core):
    core.create_namespaced_event(
        "default",
        {
            "metadata": {"name": "both.1"},
            "involvedObject": {"kind": "RayCluster", "name": "demo", "namespace": "default"},
            "reason": "Created",
            "message": "seen both ways",
            "type": "Normal",
            "source": {"component": "ray-operator"},
        },
    )
    status, seen = raw_request(api_server, "GET", "/apis/events.k8s.io/v1/namespaces/default/events/both.1")
    assert status == 200 and (seen["note"], seen["regarding"]["name"]) == ("seen both ways", "demo")


def test_deployments_with_status_and_scale(kube):
    apps = kubernetes.client.AppsV1Api(kube)
    deployment = {
        "metadata": {"name": "op"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "op"}},
            "template": {
                "metadata": {"labels": {"app": "op"}},
                "spec": {"containers": [{"name": "op", "image": "op:1"}]},
            },
        },
    }
    created = apps.create_namespaced_deployment("default", deployment)
    assert created.metadata.generation == 1
    patched = apps.patch_namespaced_deployment(
        "op", "default", {"spec": {"template": {"spec": {"containers": [{"name": "op", "image": "op:2"}]}}}}
    )
    assert patched.metadata.generation == 2 and patched.spec.template.spec.containers[0].image == "op:2"
    status = apps.patch_namespaced_deployment_status("op", "default", {"status": {"replicas": 1, "readyReplicas": 1}})
    assert status.status.ready_replicas == 1 and status.metadata.generation == 2


def test_leases(kube):
    coordination = kubernetes.client.CoordinationV1Api(kube)
    lease = coordination.create_namespaced_lease(
        "default", {"metadata": {"name": "leader"}, "spec": {"holderIdentity": "a"}}
    )
    lease.spec.holder_identity = "b"
    assert coordination.replace_namespaced_lease("leader", "default", lease).spec.holder_identity == "b"


def test_rbac_objects(kube):
    rbac = kubernetes.client.RbacAuthorizationV1Api(kube)
    rbac.create_cluster_role(
        {
            "metadata": {"name": "system:ray-operator"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}],
        }
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": "ray-operator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:ray-operator"},
            "subjects": [{"kind": "ServiceAccount", "name": "ray-operator", "namespace": "default"}],
        }
    )
    rbac.create_namespaced_role("default", {"metadata": {"name": "r"}, "rules": []})
    rbac.create_namespaced_role_binding(
        "default",
        {
            "metadata": {"name": "rb"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
            "subjects": [],
        },
    )
    assert "system:ray-operator" in [r.metadata.name for r in rbac.list_cluster_role().items]
    assert rbac.read_namespaced_role_binding("rb", "default").role_ref.name == "r"


@pytest.mark.known_difference(
    "no bootstrap ClusterRoles: a binding to cluster-admin, admin, edit or view grants nothing"
)
def test_the_bootstrap_cluster_roles_exist(kube):
    roles = {r.metadata.name for r in kubernetes.client.RbacAuthorizationV1Api(kube).list_cluster_role().items}
    assert {"cluster-admin", "admin", "edit", "view"} <= roles


def test_nodes_and_service_accounts(core):
    node = core.create_node({"metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}}})
    assert node.metadata.namespace is None
    core.patch_node_status("node-1", {"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    assert core.read_node("node-1").status.conditions[0].status == "True"
    core.create_namespace({"metadata": {"name": "fresh"}})
    wait_for(
        lambda: [a.metadata.name for a in core.list_namespaced_service_account("fresh").items] == ["default"],
        message="the new namespace's default ServiceAccount",
    )  # a controller's work on a real server


def test_pod_binding(core):
    """pods/binding puts a pod on a node once; the pod spec itself cannot change nodeName."""
    core.create_namespaced_pod(
        "default", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}
    )
    core.create_namespaced_pod_binding(
        "p",
        "default",
        {"metadata": {"name": "p"}, "target": {"kind": "Node", "name": "node-1"}},
        _preload_content=False,
    )
    pod = core.read_namespaced_pod("p", "default")
    assert pod.spec.node_name == "node-1" and pod.status.conditions[0].type == "PodScheduled"
    import pytest
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException) as raised:
        core.create_namespaced_pod_binding(
            "p",
            "default",
            {"metadata": {"name": "p"}, "target": {"kind": "Node", "name": "node-2"}},
            _preload_content=False,
        )
    assert raised.value.status == 409


def test_a_containers_name_is_an_rfc_1123_label(core):
    """A pod template that works in the sandbox must work on a cluster: kube-apiserver refuses such a name."""
    from kubernetes.client.exceptions import ApiException

    for key in ("containers", "initContainers"):
        spec = {"containers": [{"name": "ray-node", "image": "busybox"}]}
        spec.setdefault(key, []).insert(0, {"name": "Not_A_DNS_Label", "image": "busybox"})
        with pytest.raises(ApiException) as raised:
            core.create_namespaced_pod("default", {"metadata": {"name": "p"}, "spec": spec})
        assert raised.value.status == 422
        body = json.loads(raised.value.body)
        assert [(c["reason"], c["field"]) for c in body["details"]["causes"]] == [
            ("FieldValueInvalid", f"spec.{key}[0].name")
        ]
        assert (
            f'spec.{key}[0].name: Invalid value: "Not_A_DNS_Label": a lowercase RFC 1123 label must consist of lower '
            "case alphanumeric characters or '-'"
        ) in body["message"]
