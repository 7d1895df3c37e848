"""The RayClusters the operator, chart and end-to-end tests make, and what they read of one: its head's budget, its
autoscaler process, its deletion waited for until nothing of it is left."""

from __future__ import annotations

from typing import Any

from kubernetes.client import PolicyV1Api
from kubernetes.client.exceptions import ApiException

from ray_operator.helm_values import raycluster_from_values
from tests.harness.files import ROOT, load_yaml
from tests.harness.local_kube import LocalKube
from tests.harness.waiting import wait_for


def raycluster(
    name: str, namespace: str = "ray", min_workers: int = 0, max_workers: int = 2, idle_minutes: float = 0.1
) -> dict:
    values = load_yaml(ROOT / "values/namespaced-operator.yaml")
    values["podTypes"]["rayHeadType"]["memory"] = "512Mi"
    values["podTypes"]["rayWorkerType"].update(minWorkers=min_workers, maxWorkers=max_workers, memory="512Mi")
    values["idleTimeoutMinutes"] = idle_minutes
    return raycluster_from_values(values, name, namespace)


def delete_and_wait_gone(kube: LocalKube, name: str, namespace: str, operator_running: bool = True) -> None:
    kube.delete(name, namespace)
    wait_for(
        lambda: (
            not kube.pods(namespace, f"ray-cluster-name={name}")
            and not [
                s for s in kube.core.list_namespaced_service(namespace).items if s.metadata.name == f"{name}-ray-head"
            ]
            and kube.ray_token(name, namespace) is None
            and head_budget(kube, name, namespace) is None
        ),
        timeout=90,
        message=f"{name}'s pods, Service, token Secret and head budget deleted",
        state=lambda: kube.describe(namespace),
    )
    wait_for(
        lambda: not kube.core.list_namespaced_pod(namespace, label_selector=f"ray-cluster-name={name}").items,
        timeout=90,
        message=f"{name}'s pods stopped by the kubelet",
        state=lambda: kube.describe(namespace),
    )
    if not operator_running:
        return
    files = (
        kube.work / f"operator{len(kube.operators) - 1}" / f"{namespace}.{name}"
    )  # its autoscaler's config, heartbeat…
    wait_for(
        lambda: not files.exists(),
        timeout=30,
        message=f"the operator's files of {name} removed",
        state=lambda: (
            sorted(p.name for p in files.iterdir()) if files.exists() else [],
            [
                line[:200]
                for line in kube.operator_lines()
                if line.startswith(f"{name},{namespace} ") and " ray_operator." in line
            ][-4:],
        ),
    )


def head_budget(kube: LocalKube, name: str, namespace: str) -> Any:
    """The cluster's head PodDisruptionBudget, None when there is none."""
    try:
        return PolicyV1Api(kube.client).read_namespaced_pod_disruption_budget(f"{name}-ray-head", namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def monitor_pid(kube: LocalKube, name: str, namespace: str) -> int:
    """The cluster's autoscaler process the operators started last."""
    return kube.autoscalers(namespace)[name][-1][0]
