"""The Helm chart charts/ray with the real Helm v4: lint, every combination rendered, installs into the API server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from autoscaler_bridge.cluster_config import autoscaler_config
from autoscaler_bridge.validation import validate_raycluster
from ray_operator.helm_values import raycluster_from_values
from tests.harness.files import CRD_FILE, ROOT, VALUES_FILES, load_yaml
from tests.harness.tools import helm

CHART = ROOT / "charts/ray"
OPERATOR_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "PodDisruptionBudget"}


def run_helm(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(helm()), *args], capture_output=True, text=True, timeout=120, env=env)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def render(release: str = "demo", namespace: str = "ray", *flags: str) -> list[dict]:
    out = run_helm("template", release, str(CHART), "--namespace", namespace, *flags).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def kinds(objects: list[dict]) -> dict[str, dict]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


def test_the_chart_ships_the_canonical_crd():
    assert (CHART / "crds/cluster.ray.io_rayclusters.yaml").read_bytes() == CRD_FILE.read_bytes()


@pytest.mark.parametrize("values", [None, *VALUES_FILES], ids=lambda v: v.name if v else "defaults")
def test_lint_is_clean(values):
    extra = ["-f", str(values)] if values else []
    for strict in ([], ["--strict"]):
        result = run_helm("lint", str(CHART), *strict, *extra)
        assert (
            "0 chart(s) failed" in result.stdout and "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout
        )


def test_default_renders_a_cluster_and_a_cluster_scoped_operator_in_the_releases_namespace():
    """`helm template -n ray` puts every operator object in `ray` (it once put them into `default` whatever -n said)."""
    objects = kinds(render())
    assert set(objects) == {
        "RayCluster/demo",
        "ServiceAccount/demo-ray-operator",
        "ClusterRole/demo-ray-operator",
        "ClusterRoleBinding/demo-ray-operator",
        "Deployment/demo-ray-operator",
        "PodDisruptionBudget/demo-ray-operator",
    }
    assert {
        o["metadata"].get("namespace") for k, o in objects.items() if not k.startswith(("RayCluster", "ClusterRole"))
    } == {"ray"}
    binding = objects["ClusterRoleBinding/demo-ray-operator"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "demo-ray-operator", "namespace": "ray"}]
    resources = objects["Deployment/demo-ray-operator"]["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
    custom = kinds(
        render("demo", "ray", "--set", "operatorResources.limits.memory=8Gi", "--set", "operatorTmpSizeLimit=2Gi")
    )
    pod = custom["Deployment/demo-ray-operator"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"cpu": "1", "memory": "8Gi"}
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}}]
    container = objects["Deployment/demo-ray-operator"]["spec"]["template"]["spec"]["containers"][0]
    lease = {"name": "RAY_OPERATOR_LEASE_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
    group = {"name": "RAY_OPERATOR_GROUP", "value": "demo-ray-operator"}
    assert container["env"] == [group, lease]  # watches every namespace; its Lease is in its own


def test_operator_only_cluster_only_namespaced_and_operator_namespace():
    assert {o["kind"] for o in render("op", "ray", "--set", "operatorOnly=true")} == OPERATOR_KINDS
    assert [o["kind"] for o in render("rc", "ray", "--set", "clusterOnly=true")] == ["RayCluster"]
    namespaced = kinds(render("team", "team-a", "--set", "namespacedOperator=true"))
    assert set(namespaced) == {
        "RayCluster/team",
        "ServiceAccount/team-ray-operator",
        "Role/team-ray-operator",
        "RoleBinding/team-ray-operator",
        "Deployment/team-ray-operator",
        "PodDisruptionBudget/team-ray-operator",
    }
    assert {o["metadata"].get("namespace") for k, o in namespaced.items() if k != "RayCluster/team"} == {"team-a"}
    env = namespaced["Deployment/team-ray-operator"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[1:] == [
        {"name": name, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
        for name in ("RAY_OPERATOR_LEASE_NAMESPACE", "RAY_OPERATOR_POD_NAMESPACE")
    ]
    elsewhere = kinds(render("demo", "ray", "--set", "operatorNamespace=ray-system"))
    assert elsewhere["Deployment/demo-ray-operator"]["metadata"]["namespace"] == "ray-system"
    assert elsewhere["ClusterRoleBinding/demo-ray-operator"]["subjects"][0]["namespace"] == "ray-system"


def test_two_clusters_in_one_namespace():
    first = kinds(render("first", "ray", "--set", "operatorOnly=false"))
    second = kinds(render("second", "ray", "--set", "clusterOnly=true"))
    assert "RayCluster/first" in first and list(second) == ["RayCluster/second"]


def test_replicas_are_all_active_rolled_one_at_a_time_and_drained_one_at_a_time():
    deployment = kinds(render("demo", "ray"))["Deployment/demo-ray-operator"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RAY_OPERATOR_GROUP"]["value"] == "demo-ray-operator"  # another release's replicas are not its peers
    budget = kinds(render("demo", "ray"))["PodDisruptionBudget/demo-ray-operator"]
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    single = kinds(render("demo", "ray", "--set", "operatorReplicas=1"))
    assert single["Deployment/demo-ray-operator"]["spec"]["replicas"] == 1
    assert "PodDisruptionBudget/demo-ray-operator" not in single  # a budget of one replica would block every drain


def test_rbac_is_exactly_what_the_operator_uses():
    [role] = [o for o in render() if o["kind"] == "ClusterRole"]
    assert role["rules"] == [
        {"apiGroups": ["cluster.ray.io"], "resources": ["rayclusters"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["cluster.ray.io"], "resources": ["rayclusters/status"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch", "create", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch", "create"]},
        {
            "apiGroups": ["policy"],
            "resources": ["poddisruptionbudgets"],
            "verbs": ["list", "watch", "create", "delete"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "delete"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "list", "watch", "create", "patch", "delete"],
        },
    ]


def test_the_operator_pod_is_locked_down():
    [deployment] = [o for o in render() if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "--health-port" in container["args"]
    metrics_port = container["args"][container["args"].index("--metrics-port") + 1]
    assert {"name": "metrics", "containerPort": int(metrics_port)} in container["ports"]
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == metrics_port
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


@pytest.mark.parametrize("values", VALUES_FILES, ids=lambda v: v.name)
def test_the_rendered_raycluster_is_the_python_mirror_and_valid(values):
    [rendered] = [o for o in render("example-cluster", "ray", "-f", str(values)) if o["kind"] == "RayCluster"]
    mirror = raycluster_from_values(load_yaml(values), "example-cluster")
    assert rendered["spec"] == mirror["spec"] and rendered["metadata"]["name"] == mirror["metadata"]["name"]
    jsonschema.validate(rendered, load_yaml(CRD_FILE)["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    assert validate_raycluster(rendered) == []


def test_the_complete_values_file_sets_every_key_the_chart_takes():
    """values/complete.yaml is the chart's every key, so the mirror test above covers each (a key the schema takes
    and the mirror dropped went unnoticed so: drainTimeoutSeconds)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    complete = load_yaml(ROOT / "values/complete.yaml")
    pod_type_keys = {key for pod_type in complete["podTypes"].values() if pod_type for key in pod_type}
    assert set(schema["properties"]) - {"global"} - set(complete) == set()
    assert set(schema["properties"]["podTypes"]["additionalProperties"]["properties"]) - pod_type_keys == set()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--set", "podTypes.rayWorkerType.maxWorkrs=3"], "additional properties 'maxWorkrs' not allowed"),
        (["--set", "headPodType=gpu"], 'headPodType "gpu" is not one of podTypes (rayHeadType, rayWorkerType)'),
        (["--set", "podTypes.rayWorkerType.minWorkers=-1"], "minimum: got -1, want 0"),
        (["--set", "namespacedOperator=yes"], "namespacedOperator"),
    ],
    ids=["typo", "unknown head", "negative", "not a boolean"],
)
def test_bad_values_are_refused_with_a_readable_message(flags, message):
    result = run_helm("template", "demo", str(CHART), *flags, check=False)
    assert result.returncode != 0 and message in result.stderr


def test_plain_manifests_are_what_the_chart_renders(tmp_path):
    subprocess.run(
        [str(ROOT / "charts/render-manifests"), str(tmp_path)],
        check=True,
        timeout=120,
        env={"HELM": str(helm()), "PATH": "/usr/bin:/bin"},
    )
    committed = sorted(p.name for p in (ROOT / "manifests").iterdir())
    assert committed == sorted(p.name for p in tmp_path.iterdir())
    for name in committed:
        assert (ROOT / "manifests" / name).read_text() == (tmp_path / name).read_text(), (
            f"manifests/{name} is stale: run charts/render-manifests"
        )


def test_the_image_pins_a_ray_version_the_operator_supports():
    import configparser
    import re

    from packaging.requirements import Requirement

    from ray_operator.monitor_process import SUPPORTED_RAY

    version = re.search(r"^ARG RAY_VERSION=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M).group(1)
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    [ray] = [Requirement(r) for r in config["options"]["install_requires"].split("\n") if r.strip().startswith("ray")]
    assert ray.specifier.contains(version)
    assert SUPPORTED_RAY[0] <= tuple(int(p) for p in version.split(".")[:2]) <= SUPPORTED_RAY[1]
    deployment = [o for o in render() if o["kind"] == "Deployment"][0]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["command"] == ["ray-operator", "run"]


def exported_metric_names() -> set[str]:
    """The sample names the operator's /metrics serves (its own metrics and the process collector's)."""
    from prometheus_client import REGISTRY

    from ray_operator import metrics

    families = [*REGISTRY.collect(), *metrics.ClusterCollector(lambda: []).collect()]
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    return {family.name + suffix for family in families for suffix in suffixes.get(family.type, [""])}


def test_the_grafana_dashboard_queries_only_what_the_operator_exports():
    assert not [o for o in render() if o["kind"] == "ConfigMap"]  # off unless asked for
    config_map = kinds(render("demo", "ray", "--set", "grafanaDashboard=true"))["ConfigMap/demo-ray-operator-dashboard"]
    assert config_map["metadata"]["namespace"] == "ray" and config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["ray-operator.json"])
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for query in queries for name in re.findall(r"\b(?:ray_operator|process)_[a-z_]+", query)}
    assert {
        "ray_operator_clusters",
        "ray_operator_autoscaler_restarts_total",
        "ray_operator_reconcile_duration_seconds_bucket",
    } <= used
    assert used <= exported_metric_names()


SHORT_VALUES = {
    "more-workers": {"podTypes": {"rayWorkerType": {"maxWorkers": 5, "CPU": 2}}},
    "head-only": {"idleTimeoutMinutes": 1, "podTypes": {"rayWorkerType": None}},
}


@pytest.mark.parametrize("values", [*VALUES_FILES, *SHORT_VALUES], ids=lambda v: getattr(v, "name", v))
def test_render_of_a_values_file_is_what_helm_template_makes(values, tmp_path):
    """`ray-operator render` merges a values file over the chart's defaults as Helm does."""
    if not isinstance(values, Path):
        values = tmp_path / f"{values}.yaml"
        values.write_text(yaml.safe_dump(SHORT_VALUES[values.stem]))
    [rendered] = [o for o in render("example-cluster", "ray", "-f", str(values)) if o["kind"] == "RayCluster"]
    ours = subprocess.run(
        [sys.executable, "-m", "ray_operator", "render", str(values), "--namespace", "ray"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ours.returncode == 0, ours.stderr
    rendered["metadata"].setdefault("namespace", "ray")  # helm install puts it in the release's namespace
    assert yaml.safe_load(ours.stdout) == autoscaler_config(rendered)


def test_the_chart_the_image_and_the_packages_have_one_version_with_a_changelog_entry():
    from ray_operator import __version__

    chart = load_yaml(CHART / "Chart.yaml")
    assert chart["version"] == chart["appVersion"] == __version__
    assert load_yaml(CHART / "values.yaml")["operatorImage"] == f"ray-operator:{__version__}"
    assert f"\n## {__version__}\n" in (ROOT / "CHANGELOG.md").read_text()
