"""Upgrading with clusters running (issue 25): the previous version's chart and operator (PREVIOUS_COMMIT, whose
operator image the node has as a directory of that commit's packages) run two clusters with workers; then the
README's upgrade — the new CRD, then `helm upgrade` of the operator's release (its RBAC and Deployment) and of the
clusters' releases — must make or delete no Ray pod, carry the statuses over and fill in what the new version adds
(each head's PodDisruptionBudget)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ray_operator import __version__
from tests.chart.test_workflow_on_kubernetes import CHART, FAST_IDLE, Cli, nothing_left, ray_pods
from tests.harness.files import ROOT
from tests.harness.waiting import wait_for
from tests.harness.local_kube import LocalKube
from tests.harness.rayclusters import head_budget
from tests.harness.tools import uninstall_every_release

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the pod runtime needs root for network namespaces")

PREVIOUS_VERSION, PREVIOUS_COMMIT = "0.1.0", "3e8a471c6db6311b7687a274e63e19078619591a"
CLUSTERS = ("example-cluster", "example-cluster2")


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous version's files (`source`) and its operator image (`image`: its packages, copied out of the
    source with what their links reach, and the `ray-operator` command, as its wheel installs them)."""
    work = tmp_path_factory.mktemp("previous")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", PREVIOUS_COMMIT], capture_output=True, timeout=120)
    assert archive.returncode == 0, (
        f"the previous version's commit {PREVIOUS_COMMIT} is not in this clone (a shallow one?): "
        f"{archive.stderr.decode()}"
    )
    source, image = work / "source", work / "image"
    source.mkdir()
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True, timeout=120)
    for package in ("operator/ray_operator", "autoscaler_bridge"):
        shutil.copytree(source / package, image / Path(package).name)
    command = image / "bin/ray-operator"
    command.parent.mkdir()
    # Guarded as pip's scripts are: the autoscalers' forkserver imports the main module again.
    command.write_text(
        f"#!{sys.executable}\nfrom ray_operator.cli import main\n\nif __name__ == '__main__':\n    main()\n"
    )
    command.chmod(0o755)
    return work


@pytest.fixture
def node(control_plane, previous, tmp_path) -> Iterator[LocalKube]:
    """The control plane with a node that has the previous operator image, and no operator process."""
    kube = LocalKube(tmp_path, control_plane=control_plane)
    try:
        kube.start_server()
        kube.start_runtime(images={f"ray-operator:{PREVIOUS_VERSION}": previous / "image"})
        yield kube
        uninstall_every_release(Cli(kube, tmp_path).helm)
        wait_for(
            lambda: not kube.core.list_pod_for_all_namespaces(label_selector="ray-cluster-name").items,
            timeout=180,
            interval=1,
            message="every pod of the releases gone",
        )
    finally:
        apply(Cli(kube, tmp_path), ROOT / "manifests/crd.yaml")  # the next tests' CRD
        kube.close()


def apply(cli: Cli, manifest: Path) -> None:
    cli.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(manifest))


def operator_images(cli: Cli) -> set[str]:
    pods = cli.kube.core.list_namespaced_pod("default", label_selector="app.kubernetes.io/component=operator").items
    return {str(p.spec.containers[0].image) for p in pods if p.metadata.deletion_timestamp is None}


def test_an_upgrade_from_the_previous_version_keeps_every_ray_pod_and_status(node, previous, tmp_path):
    cli, old_chart = Cli(node, tmp_path), str(previous / "source/charts/ray")
    apply(cli, previous / "source/manifests/crd.yaml")
    cli.helm("install", "ray-operator", old_chart, "--set", "operatorOnly=true")
    wait_for(
        lambda: len(cli.operator_pods("default")) == 2,
        timeout=120,
        message=f"the {PREVIOUS_VERSION} operator's 2 replicas Running",
    )
    assert operator_images(cli) == {f"ray-operator:{PREVIOUS_VERSION}"}
    for name in CLUSTERS:
        cli.helm("-n", "ray", "install", name, old_chart, "--create-namespace", "--set", "clusterOnly=true", *FAST_IDLE)
    running = {name: ["Running", "0"] for name in CLUSTERS}
    wait_for(lambda: cli.rayclusters("ray") == running, timeout=240, interval=1, message="both clusters Running")
    wait_for(
        lambda: all(len(node.workers(name, "ray")) == 2 for name in CLUSTERS),
        timeout=120,
        message="each cluster's 2 minWorkers",
    )
    before = ray_pods(node, "ray")

    # The README's upgrade: the CRD, then the operator's release (RBAC and Deployment), then the clusters'.
    apply(cli, ROOT / "manifests/crd.yaml")
    cli.helm("upgrade", "ray-operator", CHART, "--set", "operatorOnly=true")
    for name in CLUSTERS:
        cli.helm("-n", "ray", "upgrade", name, CHART, "--set", "clusterOnly=true", *FAST_IDLE)
    wait_for(
        lambda: operator_images(cli) == {f"ray-operator:{__version__}"} and len(cli.operator_pods("default")) == 2,
        timeout=180,
        message=f"the {__version__} operator's 2 replicas, and no {PREVIOUS_VERSION} one",
    )
    wait_for(
        lambda: (
            {cli.owner_pod(name, "ray") for name in CLUSTERS} <= set(cli.operator_pods("default"))
            and cli.rayclusters("ray") == running
            and all(head_budget(node, name, "ray") is not None for name in CLUSTERS)
        ),
        timeout=180,
        message="both clusters Running under the new operator, each with its head's budget (new in 0.2.0)",
        state=lambda: f"{cli.rayclusters('ray')}; {node.describe('ray')}",
    )
    assert ray_pods(node, "ray") == before  # no Ray pod made or deleted
    assert all(node.status(name, "ray")["autoscalerRetries"] == 0 for name in CLUSTERS)

    cli.helm("-n", "ray", "uninstall", *CLUSTERS)
    wait_for(lambda: nothing_left(node, "ray"), timeout=180, interval=1, message="no Ray pod or Service left")
