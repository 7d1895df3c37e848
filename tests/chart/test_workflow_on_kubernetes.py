"""The README's workflow, verbatim, on the real control plane: the operator is the pod the chart's Deployment makes
(the pod runtime runs the `ray-operator` image on the installed command, with the ServiceAccount token a kubelet
mounts), Ray pods are scheduled by kube-scheduler, collected by the garbage collector, and finalized by the
pod runtime as a node's kubelet. Only the idle timeout is shortened, so that scale-down is seen within the test."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator

import pytest

from tests.harness.files import ROOT
from tests.harness.waiting import wait_for
from tests.harness.local_kube import LocalKube
from tests.harness.tools import helm, helm_env, kubectl, uninstall_every_release

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the pod runtime needs root for network namespaces")

CHART = str(ROOT / "charts/ray")
FAST_IDLE = ["--set-json", "idleTimeoutMinutes=0.2"]  # --set would make 0.2 a string


@pytest.fixture
def node(control_plane, tmp_path) -> Iterator[LocalKube]:
    """The control plane with a node (the pod runtime) and no operator process: the chart brings the operator.
    Whatever a test installed is uninstalled after it, and its pods stopped, while the node still runs them: an
    operator Deployment left behind would run on a later test's node."""
    kube = LocalKube(tmp_path, control_plane=control_plane)
    try:
        kube.start_server()
        kube.start_runtime()
        yield kube
        uninstall_every_release(Cli(kube, tmp_path).helm)
        wait_for(
            lambda: (
                not kube.core.list_pod_for_all_namespaces(label_selector="app.kubernetes.io/name=ray").items
                and not kube.core.list_pod_for_all_namespaces(label_selector="ray-cluster-name").items
            ),
            timeout=180,
            interval=1,
            message="every pod of the releases gone",
        )
    finally:
        kube.close()


class Cli:
    def __init__(self, kube: LocalKube, home) -> None:
        self.kube, self.env = kube, helm_env(home, kube.kubeconfig)

    def helm(self, *args: str) -> str:
        result = subprocess.run([str(helm()), *args], capture_output=True, text=True, env=self.env, timeout=180)
        assert result.returncode == 0, f"helm {' '.join(args)}: {result.stderr}"
        return result.stdout

    def kubectl(self, *args: str) -> str:
        result = subprocess.run(
            [str(kubectl()), "--kubeconfig", str(self.kube.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    def rayclusters(self, namespace: str) -> dict[str, list[str]]:
        """`kubectl get rayclusters` as {name: [STATUS, RESTARTS]}."""
        rows = self.kubectl("-n", namespace, "get", "rayclusters").splitlines()
        assert rows[0].split()[:3] == ["NAME", "STATUS", "RESTARTS"], rows
        return {row.split()[0]: row.split()[1:3] for row in rows[1:]}

    def operator_pods(self, namespace: str) -> list[str]:
        """The names of the running operator pods (not being deleted), sorted."""
        pods = self.kube.core.list_namespaced_pod(
            namespace, label_selector="app.kubernetes.io/component=operator"
        ).items
        return sorted(
            str(p.metadata.name) for p in pods if p.metadata.deletion_timestamp is None and p.status.phase == "Running"
        )

    def operator_logs(self, namespace: str, release: str) -> list[str]:
        """Every line every operator replica of the release logged."""
        selector = f"app.kubernetes.io/component=operator,app.kubernetes.io/instance={release}"
        return self.kubectl("-n", namespace, "logs", "-l", selector, "--tail=-1").splitlines()

    def owner_pod(self, name: str, namespace: str) -> str:
        """The operator pod that runs the cluster (status.operator's identity is <pod name>-<pid>)."""
        identity = (self.kube.status(name, namespace).get("operator") or {}).get("identity", "")
        return identity.rsplit("-", 1)[0]


def ray_pods(kube: LocalKube, namespace: str) -> dict[str, str]:
    return {p.metadata.name: p.metadata.uid for p in kube.pods(namespace, "ray-cluster-name")}


def nothing_left(kube: LocalKube, namespace: str) -> bool:
    return (
        not kube.core.list_namespaced_pod(namespace, label_selector="ray-cluster-name").items
        and not kube.core.list_namespaced_service(namespace, label_selector="ray-cluster-name").items
    )


def test_helm_install_scale_operator_restart_and_uninstall(node, tmp_path):
    """With the chart's two operator replicas: each cluster runs on one; deleting the pod of one moves its clusters to
    the other and then, rebalanced, to the new pod, with no Ray pod made or deleted and no restart counted."""
    cli = Cli(node, tmp_path)
    cli.helm("install", "ray-operator", CHART, "--set", "operatorOnly=true")
    wait_for(lambda: len(cli.operator_pods("default")) == 2, timeout=120, message="the operator's 2 replicas Running")

    cli.helm(
        "-n", "ray", "install", "example-cluster", CHART, "--create-namespace", "--set", "clusterOnly=true", *FAST_IDLE
    )
    cli.helm("-n", "ray", "install", "example-cluster2", CHART, "--set", "clusterOnly=true", *FAST_IDLE)
    running = {"example-cluster": ["Running", "0"], "example-cluster2": ["Running", "0"]}
    wait_for(
        lambda: cli.rayclusters("ray") == running, timeout=240, interval=1, message="both clusters Running, 0 restarts"
    )
    wait_for(
        lambda: len(node.workers("example-cluster", "ray")) == 2, timeout=120, message="example-cluster's 2 minWorkers"
    )

    job: list[str] = []
    submitted = threading.Thread(target=lambda: job.append(node.run_job("example-cluster", "ray", tasks=8, seconds=6)))
    submitted.start()  # 8 tasks of 1 CPU: more than the head and 2 workers hold
    wait_for(lambda: len(node.workers("example-cluster", "ray")) == 3, timeout=120, message="scaled up to maxWorkers 3")
    submitted.join(timeout=300)
    assert job == ["SUCCEEDED"]
    wait_for(
        lambda: len(node.workers("example-cluster", "ray")) == 2,
        timeout=180,
        interval=1,
        message="idle scale-down to 2",
    )

    logs = cli.operator_logs("default", "ray-operator")
    assert [line for line in logs if line.startswith("example-cluster2,ray ")]
    assert not [line for line in logs if line.startswith("example-cluster,ray ") and "example-cluster2" in line]

    before, replicas = ray_pods(node, "ray"), cli.operator_pods("default")
    assert {cli.owner_pod(name, "ray") for name in running} <= set(replicas)
    old_operator = cli.owner_pod("example-cluster", "ray")
    cli.kubectl("delete", "pod", old_operator, "--wait=false")
    wait_for(
        lambda: len(cli.operator_pods("default")) == 2 and old_operator not in cli.operator_pods("default"),
        timeout=120,
        message="a new operator pod beside the other",
    )
    wait_for(
        lambda: (
            {cli.owner_pod(name, "ray") for name in running} <= set(cli.operator_pods("default"))
            and cli.rayclusters("ray") == running
        ),
        timeout=120,
        message="both clusters run by the live replicas",
    )
    assert ray_pods(node, "ray") == before  # moved with no pod churn
    assert all(node.status(name, "ray")["autoscalerRetries"] == 0 for name in running)

    cli.helm("-n", "ray", "uninstall", "example-cluster", "example-cluster2")
    wait_for(lambda: nothing_left(node, "ray"), timeout=180, interval=1, message="no Ray pod or Service left")
    cli.helm("uninstall", "ray-operator")
    wait_for(lambda: not node.core.list_namespaced_pod("default").items, timeout=120, message="the operator's pod gone")


def test_a_namespaced_operator_runs_a_cluster_with_nothing_but_the_charts_rbac(node, tmp_path):
    """values/namespaced-operator.yaml: the operator pod has only the chart's Role in its namespace. A missing verb
    would show as a 403 in its log and a cluster that never gets Running or never scales."""
    cli = Cli(node, tmp_path)
    values = tmp_path / "values.yaml"
    values.write_text(
        (ROOT / "values/namespaced-operator.yaml")
        .read_text()
        .replace("idleTimeoutMinutes: 1", "idleTimeoutMinutes: 0.1")
        .replace("memory: 1Gi", "memory: 512Mi")
    )
    cli.helm("-n", "team-x", "install", "team", CHART, "--create-namespace", "-f", str(values))
    wait_for(
        lambda: cli.rayclusters("team-x") == {"team": ["Running", "0"]}, timeout=240, interval=1, message="team Running"
    )
    assert node.run_job("team", "team-x", tasks=3) == "SUCCEEDED"
    wait_for(lambda: not node.workers("team", "team-x"), timeout=120, message="idle workers removed")
    logs = cli.operator_logs("team-x", "team")  # every replica's: either may own the cluster
    assert [line for line in logs if line.startswith("team,team-x ")]
    assert not [line for line in logs if "Forbidden" in line or "(403)" in line]
    cli.helm("-n", "team-x", "uninstall", "team")
    wait_for(
        lambda: nothing_left(node, "team-x") and not node.core.list_namespaced_pod("team-x").items,
        timeout=180,
        interval=1,
        message="nothing left in team-x",
    )
