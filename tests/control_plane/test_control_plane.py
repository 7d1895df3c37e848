"""The tests' real control plane, and the pod runtime as a node's kubelet on it: what the other suites rely on,
checked on its own."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
from collections.abc import Iterator

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from control_plane import ControlPlane, ControlPlaneError
from tests.harness.waiting import wait_for
from tests.harness.local_kube import LocalKube
from tests.harness.tools import kubectl

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the pod runtime needs root for network namespaces")

# In the pod: what a kubelet gave it, then a request with its ServiceAccount's token (in-cluster configuration).
IN_POD = """
import json, os, kubernetes
mounted = "/var/run/secrets/kubernetes.io/serviceaccount"
kubernetes.config.load_incluster_config()
try:
    kubernetes.client.CoreV1Api().list_namespaced_secret(open(mounted + "/namespace").read())
    answer = "allowed"
except kubernetes.client.exceptions.ApiException as error:
    answer = json.loads(error.body)["message"]
host = os.environ["KUBERNETES_SERVICE_HOST"]
print(json.dumps({"files": sorted(os.listdir(mounted)), "host": host, "answer": answer}))
"""


def test_a_step_that_fails_is_named_with_its_log(tmp_path):
    plane = ControlPlane(tmp_path)
    with socket.socket() as taken:  # the API server's port, taken: kube-apiserver exits at once
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", plane.port))
        taken.listen()
        with pytest.raises(ControlPlaneError) as raised:
            plane.start()
    message = str(raised.value)
    assert (
        message.startswith("control plane: kube-apiserver exited") and "waiting for kube-apiserver /readyz" in message
    )
    assert "address already in use" in message  # the tail of its log
    assert not plane.processes  # etcd was stopped again


def test_tokens_are_made_and_checked_with_rbac_on(control_plane, tmp_path):
    run = lambda *args, config=control_plane.kubeconfig: subprocess.run(  # noqa: E731
        [str(kubectl()), "--kubeconfig", str(config), *args], capture_output=True, text=True, timeout=60
    )
    token = run("create", "token", "default").stdout.strip()
    assert token.count(".") == 2  # a signed JWT
    as_default = control_plane.write_kubeconfig(tmp_path / "default", token)
    assert (
        run("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", config=as_default).stdout
        == "system:serviceaccount:default:default"
    )
    refused = run("get", "secrets", config=as_default)
    assert refused.returncode != 0 and "Forbidden" in refused.stderr


@pytest.fixture
def node(control_plane, tmp_path) -> Iterator[LocalKube]:
    kube = LocalKube(tmp_path, control_plane=control_plane)
    try:
        kube.start_server()
        kube.start_runtime()
        yield kube
    finally:
        kube.close()


@needs_root
def test_the_pod_runtime_is_a_kubelet(node):
    core = node.core
    ready = wait_for(
        lambda: (lambda n: n if n.spec.taints is None and n.status.conditions[0].status == "True" else None)(
            core.read_node("local-node")
        ),
        timeout=60,
        message="the node Ready and untainted by the node lifecycle controller",
    )
    assert ready.status.allocatable["cpu"] == "64"
    leases = kubernetes.client.CoordinationV1Api(node.client)
    first = leases.read_namespaced_lease("local-node", "kube-node-lease").spec.renew_time
    wait_for(
        lambda: leases.read_namespaced_lease("local-node", "kube-node-lease").spec.renew_time > first,
        timeout=30,
        message="the node's Lease renewed",
    )

    node.namespace("kubelet")
    wait_for(
        lambda: core.list_namespaced_service_account("kubelet").items, message="the namespace's default ServiceAccount"
    )
    core.create_namespaced_pod(
        "kubelet",
        {
            "metadata": {"name": "probe"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {"name": "probe", "image": "rayproject/ray:2.60.0", "command": ["python", "-c", IN_POD]}
                ],
            },
        },
    )
    pod = wait_for(
        lambda: (lambda p: p if p.status.phase == "Succeeded" else None)(core.read_namespaced_pod("probe", "kubelet")),
        timeout=60,
        message="the pod run to completion",
    )
    assert pod.spec.node_name == "local-node"  # bound by kube-scheduler
    logs = subprocess.run(
        [str(kubectl()), "--kubeconfig", str(node.kubeconfig), "-n", "kubelet", "logs", "probe"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    seen = json.loads(logs.stdout.splitlines()[-1])  # kubectl logs, through the kubelet endpoint
    assert seen["files"] == ["ca.crt", "namespace", "token"]
    assert seen["host"] == str(ipaddress.ip_network(node.subnet).network_address + 1)  # the relay on the node
    assert seen["answer"].startswith('secrets is forbidden: User "system:serviceaccount:kubelet:default"')

    core.delete_namespaced_pod("probe", "kubelet")  # graceful; the runtime's final delete ends it
    wait_for(lambda: not core.list_namespaced_pod("kubelet").items, timeout=30, message="the pod deleted")
    with pytest.raises(ApiException):
        core.read_namespaced_pod("probe", "kubelet")
