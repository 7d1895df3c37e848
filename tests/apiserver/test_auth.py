"""Bearer tokens and RBAC: 401 without a valid token, 403 where no binding allows the request; on the project's
API server with authentication on, and on a real kube-apiserver.

The project's server's tokens are opaque and never expire (a real server issues signed, expiring JWTs), and it
has no client certificates, OIDC or RBAC escalation checks.
"""

import json

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from kube_apiserver.kubeconfig import write_kubeconfig
from tests.apiserver.conftest import a_server
from tests.harness.api import server_ca


@pytest.fixture(params=["project", "kubernetes"])
def secured(request, fresh_planes):
    with a_server(request.param, fresh_planes, admin_token="admin-secret") as server:
        yield server


def client(server, token=None):
    """A client trusting the server's CA, sending `token` (none at all when None)."""
    import tempfile
    from pathlib import Path

    path = write_kubeconfig(Path(tempfile.mkdtemp()) / "kubeconfig", server.url, token, ca_pem=server_ca(server))
    return kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(str(path)))


def test_a_wrong_token_is_unauthorized_and_none_is_anonymous(secured):
    with pytest.raises(ApiException) as raised:
        client(secured, "wrong").list_namespace()
    assert (raised.value.status, json.loads(raised.value.body)["reason"]) == (401, "Unauthorized")
    with pytest.raises(ApiException) as raised:
        client(secured).list_namespace()
    body = json.loads(raised.value.body)
    assert (raised.value.status, body["reason"]) == (403, "Forbidden")
    assert 'User "system:anonymous" cannot list resource "namespaces"' in body["message"]
    assert [n.metadata.name for n in client(secured, secured.admin_token).list_namespace().items]


def test_service_account_rights_come_from_its_role_bindings(secured):
    admin = client(secured, secured.admin_token)
    rbac = kubernetes.client.RbacAuthorizationV1Api(admin.api_client)
    for namespace in ("team", "other"):
        admin.create_namespace({"metadata": {"name": namespace}})
    admin.create_namespaced_service_account("team", {"metadata": {"name": "operator"}})
    rbac.create_namespaced_role(
        "team",
        {
            "metadata": {"name": "pods"},
            "rules": [
                {"apiGroups": [""], "resources": ["pods", "pods/status"], "verbs": ["get", "list", "watch", "create"]}
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        "team",
        {
            "metadata": {"name": "operator-pods"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pods"},
            "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": "team"}],
        },
    )
    token = admin.create_namespaced_service_account_token("operator", "team", {"spec": {}}).status.token
    operator = client(secured, token)
    assert operator.list_namespaced_pod("team").items == []
    with pytest.raises(ApiException) as raised:
        operator.list_namespaced_pod("other")
    body = json.loads(raised.value.body)
    assert (raised.value.status, body["reason"]) == (403, "Forbidden")
    assert body["message"] == (
        'pods is forbidden: User "system:serviceaccount:team:operator" cannot list resource "pods" '
        'in API group "" in the namespace "other"'
    )
    with pytest.raises(ApiException) as raised:
        operator.delete_namespaced_pod("x", "team")
    assert raised.value.status == 403
    with pytest.raises(ApiException) as raised:
        operator.list_pod_for_all_namespaces()
    assert raised.value.status == 403 and "at the cluster scope" in raised.value.body


def test_cluster_role_binding_grants_everywhere(secured, tmp_path):
    admin = client(secured, secured.admin_token)
    rbac = kubernetes.client.RbacAuthorizationV1Api(admin.api_client)
    admin.create_namespaced_service_account("default", {"metadata": {"name": "reader"}})
    rbac.create_cluster_role(
        {
            "metadata": {"name": "config-reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
        }
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "config-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "default"}],
        }
    )
    admin.create_namespaced_config_map("kube-public", {"metadata": {"name": "visible"}})
    token = admin.create_namespaced_service_account_token("reader", "default", {"spec": {}}).status.token
    assert "visible" in [c.metadata.name for c in client(secured, token).list_config_map_for_all_namespaces().items]

    import subprocess

    from tests.harness.tools import kubectl

    config = secured.write_kubeconfig(tmp_path / "reader", token)

    def can_i(*args):
        return subprocess.run(
            [str(kubectl()), "--kubeconfig", str(config), "auth", "can-i", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )

    assert can_i("list", "configmaps", "-n", "kube-system").stdout.strip() == "yes"
    assert can_i("delete", "configmaps", "-n", "kube-system").stdout.strip() == "no"
