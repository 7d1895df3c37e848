"""What the autoscalers' forkserver makes for them to share (kube_client.share_with_forks)."""

import ast

import pytest

from autoscaler_bridge import kube_client
from autoscaler_bridge.kube_client import USER_AGENT, KubeCalls, api_client, share_with_forks
from autoscaler_bridge.node_provider import API_METHODS
from tests.harness.files import ROOT


def test_the_forkserver_prepares_every_api_method_the_node_provider_calls():
    """A method missing from API_METHODS would cost every autoscaler that calls it megabytes of its own."""
    tree = ast.parse((ROOT / "autoscaler_bridge/node_provider.py").read_text())
    called = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "core"
    }
    assert called == set(API_METHODS)


@pytest.fixture
def unshared(monkeypatch):
    monkeypatch.setattr(kube_client, "_shared_configuration", None)


def test_sharing_sends_one_request_and_clients_made_after_use_the_shared_configuration(
    api_server, kubeconfig, unshared, monkeypatch
):
    before = len(api_server.request_log)
    share_with_forks(API_METHODS)
    assert list(api_server.request_log)[before:] == [("GET", "/version/", USER_AGENT)]
    monkeypatch.delenv("KUBECONFIG")  # a client made now could not configure itself
    client = api_client()
    assert client.configuration is kube_client._shared_configuration
    assert client.configuration.host == api_server.url
    assert KubeCalls(client).core.list_namespaced_pod("default").items == []


def test_with_no_configuration_to_share_each_client_configures_itself(tmp_path, unshared, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    share_with_forks(API_METHODS)
    assert kube_client._shared_configuration is None
    with pytest.raises(Exception, match="kube-config"):
        api_client()
