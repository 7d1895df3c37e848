"""`ray-operator render` and `--version`, run as the installed console script."""

import shutil
import subprocess

import pytest
import yaml
from ray.autoscaler._private.util import validate_config

from ray_operator import __version__
from tests.harness.files import LEGACY_EXAMPLE, ROOT, VALUES_FILES

RAY_OPERATOR = shutil.which("ray-operator")
pytestmark = pytest.mark.skipif(RAY_OPERATOR is None, reason="the package is not installed (pip install -e .)")


def run(*args):
    return subprocess.run([RAY_OPERATOR, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_version():
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"ray-operator, version {__version__}"


@pytest.mark.parametrize("path", [*VALUES_FILES, LEGACY_EXAMPLE], ids=lambda p: p.name)
def test_render_every_example(path):
    result = run("render", str(path))
    assert result.returncode == 0, result.stderr
    [config] = list(yaml.safe_load_all(result.stdout))
    validate_config(config)
    assert config["cluster_name"] == "example-cluster"


def test_render_values_file_with_release_name_and_namespace():
    result = run(
        "render", "--name", "team-cluster", "--namespace", "team-a", str(ROOT / "values/namespaced-operator.yaml")
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert config["cluster_name"] == "team-cluster"
    assert config["provider"]["namespace"] == "team-a"
    assert config["idle_timeout_minutes"] == 1
    assert sorted(config["available_node_types"]) == ["rayHeadType", "rayWorkerType"]


def test_render_gpu_values():
    config = yaml.safe_load(run("render", str(ROOT / "values/gpu-workers.yaml")).stdout)
    gpu = config["available_node_types"]["rayGPUWorkerType"]
    assert gpu["resources"] == {"CPU": 4, "memory": 16 * 1024**3, "GPU": 1, "accelerator_a100": 1}
    assert gpu["node_config"]["spec"]["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}
    assert gpu["node_config"]["spec"]["containers"][0]["image"] == "rayproject/ray:2.60.0-gpu"


BROKEN_CLUSTER = """
apiVersion: cluster.ray.io/v1
kind: RayCluster
metadata: {{name: broken}}
spec:
  headPodType: {head}
  podTypes:
  - name: head
    minWorkers: {min}
    maxWorkers: {max}
    rayResources: {{accel: {resource}}}
    podConfig:
      spec:
        containers: {containers}
"""
GOOD = dict(
    head="head", min=0, max=1, resource=1, containers="[{name: ray-node, resources: {limits: {cpu: '1', memory: 1Gi}}}]"
)
BROKEN = {
    "missing headPodType": ({"head": "null"}, "spec.headPodType: is required"),
    "unknown headPodType": ({"head": "gpu"}, "spec.headPodType: 'gpu' is not one of the podTypes (head)"),
    "negative minWorkers": ({"min": -1}, "spec.podTypes[0].minWorkers: -1 is negative"),
    "inverted min/max": ({"min": 3}, "spec.podTypes[0].maxWorkers: 1 is less than minWorkers 3"),
    "non-numeric rayResources": (
        {"resource": "lots"},
        "spec.podTypes[0].rayResources.accel: 'lots' is not a whole number",
    ),
    "unparsable quantity": (
        {"containers": "[{name: ray-node, resources: {limits: {cpu: 'two'}}}]"},
        "spec.podTypes[0].podConfig.spec.containers[0].resources.limits.cpu: 'two' is not a Kubernetes quantity",
    ),
    "no container": ({"containers": "[]"}, "spec.podTypes[0].podConfig.spec.containers: needs at least one container"),
    "enormous exponent": (  # once held a core for 49 s turning it into an integer
        {"containers": "[{name: ray-node, resources: {limits: {cpu: '1e1000000'}}}]"},
        "spec.podTypes[0].podConfig.spec.containers[0].resources.limits.cpu: '1e1000000' is more than Kubernetes "
        "allows for a quantity (9223372036854775807)",
    ),
    "infinite resource": ({"resource": ".inf"}, "spec.podTypes[0].rayResources.accel: inf is not a finite number"),
    "env as a string": (
        {"containers": "[{name: ray-node, env: 'A=b', resources: {limits: {cpu: 1}}}]"},
        "spec.podTypes[0].podConfig.spec.containers[0].env: 'A=b' is not a list",
    ),
}


@pytest.mark.parametrize("change, message", BROKEN.values(), ids=BROKEN.keys())
def test_render_refuses_broken_input_with_exit_2(tmp_path, change, message):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN_CLUSTER.format(**{**GOOD, **change}))
    result = run("render", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "RayCluster broken is invalid:" in result.stderr
    assert f"  - {message}" in result.stderr


def test_render_lists_all_problems(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN_CLUSTER.format(**{**GOOD, "head": "gpu", "min": -1, "resource": "x"}))
    result = run("render", str(path))
    assert result.returncode == 2
    assert sum(line.startswith("  - ") for line in result.stderr.splitlines()) == 3


@pytest.mark.parametrize(
    "content, message",
    [
        ("a: [unclosed", "while parsing"),
        ("kind: ConfigMap\n", "no RayCluster in it"),
        ("image: null\nheadPodType: null\npodTypes: {head: {CPU: 1}}\n", "the values file lacks image, headPodType"),
        ("kind: RayCluster\nspec: " + "[" * 10_000 + "]" * 10_000 + "\n", "nested too deeply to be read"),
        (
            "headPodType: h\npodTypes: {h: {maxWorkers: two, CPU: .nan}}\n",
            "spec.podTypes[0].maxWorkers: 'two' is not a whole number",
        ),
    ],
    ids=["not yaml", "no raycluster", "incomplete values", "too deep", "hostile values"],
)
def test_render_refuses_unreadable_files_with_exit_2(tmp_path, content, message):
    path = tmp_path / "x.yaml"
    path.write_text(content)
    result = run("render", str(path))
    assert result.returncode == 2
    assert message in result.stderr
