"""`helm install` of the chart into the real control plane, with Helm's default storage driver (release Secrets).

The releases' operator Deployments make pods there; every release is uninstalled at the end, so that no
operator pod is left for a later test's node to run."""

from __future__ import annotations

import json
import subprocess

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from tests.harness.files import ROOT
from tests.harness.waiting import wait_for
from tests.harness.tools import helm, helm_env, uninstall_every_release

CHART = str(ROOT / "charts/ray")


@pytest.fixture
def secured(control_plane, tmp_path):
    """The control plane (authentication and RBAC on), and helm as its admin; every release uninstalled after."""
    admin = control_plane.write_kubeconfig(tmp_path / "admin")

    def run(*args: str) -> str:
        result = subprocess.run(
            [str(helm()), *args], capture_output=True, text=True, env=helm_env(tmp_path, admin), timeout=120
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    client = kubernetes.config.new_client_from_config(str(admin))
    yield control_plane, run, client
    uninstall_every_release(run)
    apps = kubernetes.client.AppsV1Api(client)
    wait_for(
        lambda: not apps.list_deployment_for_all_namespaces(label_selector="app.kubernetes.io/name=ray").items,
        timeout=60,
        message="the releases' Deployments gone",
    )


def names(items) -> list[str]:
    return sorted(i.metadata.name if hasattr(i, "metadata") else i["metadata"]["name"] for i in items)


def test_install_every_combination(secured):
    server, run, client = secured
    core, rbac = kubernetes.client.CoreV1Api(client), kubernetes.client.RbacAuthorizationV1Api(client)
    apps, custom = kubernetes.client.AppsV1Api(client), kubernetes.client.CustomObjectsApi(client)
    rayclusters = lambda ns: custom.list_namespaced_custom_object("cluster.ray.io", "v1", ns, "rayclusters")["items"]  # noqa: E731

    notes = run("install", "demo", CHART, "--namespace", "ray", "--create-namespace")
    assert "kubectl -n ray get rayclusters demo" in notes and "grep 'demo,ray'" in notes
    assert (
        "RAY_AUTH_MODE=token RAY_AUTH_TOKEN=$(kubectl -n ray get secret demo-ray-auth -o jsonpath='{.data.token}' "
        "| base64 -d) ray job submit --address http://demo-ray-head.ray.svc.cluster.local:8265 -- <command>"
    ) in notes
    assert names(rayclusters("ray")) == ["demo"]
    assert names(apps.list_namespaced_deployment("ray").items) == ["demo-ray-operator"]  # the release's namespace
    assert "demo-ray-operator" in names(rbac.list_cluster_role().items)
    assert core.read_namespaced_service_account("demo-ray-operator", "ray")

    notes = run(
        "install",
        "second",
        CHART,
        "--namespace",
        "ray",
        "--set",
        "clusterOnly=true",
        "--set",
        "rayAuthentication=disabled",
    )
    assert "no authentication (rayAuthentication: disabled)" in notes and "RAY_AUTH_TOKEN" not in notes
    assert names(rayclusters("ray")) == ["demo", "second"]
    assert names(apps.list_namespaced_deployment("ray").items) == ["demo-ray-operator"]

    core.create_namespace(
        {"metadata": {"name": "chart-system"}}
    )  # the operator's namespace must exist, as in any cluster
    run(
        "install",
        "ops",
        CHART,
        "--namespace",
        "ray",
        "--set",
        "operatorOnly=true",
        "--set",
        "operatorNamespace=chart-system",
    )
    assert names(rayclusters("ray")) == ["demo", "second"]
    assert names(apps.list_namespaced_deployment("chart-system").items) == ["ops-ray-operator"]

    run("install", "team", CHART, "--namespace", "team-a", "--create-namespace", "--set", "namespacedOperator=true")
    assert names(apps.list_namespaced_deployment("team-a").items) == ["team-ray-operator"]
    assert names(rbac.list_namespaced_role("team-a").items) == ["team-ray-operator"]
    assert "team-ray-operator" not in names(rbac.list_cluster_role().items)

    run("uninstall", "second", "--namespace", "ray")
    assert names(rayclusters("ray")) == ["demo"]


def test_a_namespaced_operator_cannot_read_pods_elsewhere(secured, tmp_path):
    server, run, client = secured
    core = kubernetes.client.CoreV1Api(client)
    run("install", "team", CHART, "--namespace", "team-a", "--create-namespace", "--set", "namespacedOperator=true")
    core.create_namespace({"metadata": {"name": "chart-elsewhere"}})
    token = core.create_namespaced_service_account_token("team-ray-operator", "team-a", {"spec": {}}).status.token
    operator = kubernetes.client.CoreV1Api(
        kubernetes.config.new_client_from_config(str(server.write_kubeconfig(tmp_path / "operator", token)))
    )
    assert operator.list_namespaced_pod("team-a", label_selector="ray-cluster-name").items == []
    for call in (
        lambda: operator.list_namespaced_pod("chart-elsewhere"),
        lambda: operator.list_pod_for_all_namespaces(),
    ):
        with pytest.raises(ApiException) as raised:
            call()
        assert raised.value.status == 403 and json.loads(raised.value.body)["reason"] == "Forbidden"


def test_the_opt_in_admission_policy_refuses_what_reaches_the_node(secured):
    """admissionPolicy: true installs a ValidatingAdmissionPolicy: a RayCluster whose pods would be privileged, use
    the host's network or PIDs, or mount a hostPath is refused at admission; an ordinary one is admitted."""
    server, run, client = secured
    custom = kubernetes.client.CustomObjectsApi(client)
    run(
        "install",
        "guarded",
        CHART,
        "--namespace",
        "ray",
        "--create-namespace",
        "--set",
        "clusterOnly=true",
        "--set",
        "admissionPolicy=true",
    )
    ordinary = custom.get_namespaced_custom_object("cluster.ray.io", "v1", "ray", "rayclusters", "guarded")

    def variant(name, change):
        body = {
            "apiVersion": "cluster.ray.io/v1",
            "kind": "RayCluster",
            "metadata": {"name": name},
            "spec": json.loads(json.dumps(ordinary["spec"])),
        }
        change(body["spec"]["podTypes"][1]["podConfig"]["spec"])
        return body

    def refusal(body):
        try:
            custom.create_namespaced_custom_object("cluster.ray.io", "v1", "ray", "rayclusters", body)
        except ApiException as error:
            return json.loads(error.body)["message"]
        custom.delete_namespaced_custom_object("cluster.ray.io", "v1", "ray", "rayclusters", body["metadata"]["name"])
        return None

    privileged = variant("privileged", lambda s: s["containers"][0].update(securityContext={"privileged": True}))
    assert "asks to be privileged" in wait_for(lambda: refusal(privileged), timeout=30, message="the policy in force")
    for name, change, why in [
        ("host-network", lambda s: s.update(hostNetwork=True), "asks for the host's network"),
        ("host-pid", lambda s: s.update(hostPID=True), "asks for the host's PIDs"),
        ("host-path", lambda s: s["volumes"].append({"name": "root", "hostPath": {"path": "/"}}), "mounts a hostPath"),
        (
            "init",
            lambda s: s.update(initContainers=[{"name": "i", "securityContext": {"privileged": True}}]),
            "asks to be privileged",
        ),
    ]:
        assert why in (refusal(variant(name, change)) or ""), name
    assert refusal(variant("plain", lambda s: s["containers"][0].update(securityContext={"privileged": False}))) is None
