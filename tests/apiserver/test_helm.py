"""The real Helm v4 against the API server, with Helm's default storage driver (release Secrets).

A memory storage driver would prove nothing: it never talks to the server.
"""

import subprocess

import pytest
from kubernetes.client.exceptions import ApiException

from tests.harness.files import ROOT
from tests.harness.waiting import wait_for
from tests.harness.tools import helm, helm_env

CHART = ROOT / "tests/data/charts/probe"


@pytest.fixture
def run_helm(kubeconfig, tmp_path, monkeypatch):
    binary = str(helm())

    def run(*args):
        result = subprocess.run(
            [binary, *args], capture_output=True, text=True, env=helm_env(tmp_path, kubeconfig), timeout=120
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    return run


def release_secrets(core, namespace="default"):
    return sorted(s.metadata.name for s in core.list_namespaced_secret(namespace, label_selector="owner=helm").items)


def test_install_upgrade_uninstall(run_helm, core, kube):
    import kubernetes

    rbac = kubernetes.client.RbacAuthorizationV1Api(kube)
    run_helm("install", "demo", str(CHART))
    assert core.read_namespaced_config_map("demo-config", "default").data == {"greeting": "hello"}
    core.read_namespaced_service_account("demo-account", "default")
    assert rbac.read_namespaced_role("demo-role", "default").rules[0].verbs == ["get", "list"]
    assert release_secrets(core) == ["sh.helm.release.v1.demo.v1"]
    assert "deployed" in run_helm("status", "demo")

    run_helm("upgrade", "demo", str(CHART), "--set", "greeting=bonjour", "--set", "withAccount=false")
    assert core.read_namespaced_config_map("demo-config", "default").data == {"greeting": "bonjour"}
    with pytest.raises(ApiException):
        core.read_namespaced_service_account("demo-account", "default")
    assert release_secrets(core) == ["sh.helm.release.v1.demo.v1", "sh.helm.release.v1.demo.v2"]
    assert "demo" in run_helm("list")

    run_helm("uninstall", "demo")
    wait_for(lambda: "demo-config" not in [c.metadata.name for c in core.list_namespaced_config_map("default").items])
    assert rbac.list_namespaced_role("default").items == []
    assert release_secrets(core) == []


def test_install_into_a_new_namespace(run_helm, core):
    run_helm("install", "other", str(CHART), "--namespace", "team", "--create-namespace")
    assert (
        core.read_namespaced_config_map("other-config", "team").metadata.labels["app.kubernetes.io/instance"] == "other"
    )
    assert release_secrets(core, "team") == ["sh.helm.release.v1.other.v1"]
