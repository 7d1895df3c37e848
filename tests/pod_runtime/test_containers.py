"""What a container runs: image mapping, environment with the downward API, $(VAR) expansion."""

from pod_runtime.containers import command_line, container_env, env_references, expand, supported_image


def test_only_ray_and_operator_images_run():
    for image in (
        "rayproject/ray:2.60.0",
        "rayproject/ray",
        "docker.io/rayproject/ray:nightly-gpu",
        "rayproject/ray-ml:2.9.0",
        "ray-operator:0.1.0",
        "registry.example.com/team/ray-operator:1",
    ):
        assert supported_image(image)
    for image in ("nginx", "rayproject/raylet:1", "example.com/rayproject/ray:1", "ray-operator-x:1", ""):
        assert not supported_image(image)


def test_expansion_as_kubernetes_does_it():
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)-$(C)", env) == "1-two-$(C)"
    assert expand("$$(A) costs $$5", env) == "$(A) costs $5"


def test_env_with_downward_api_and_references():
    pod = {
        "metadata": {"name": "p1", "namespace": "ns", "uid": "u"},
        "spec": {"nodeName": "n1"},
        "status": {"podIP": "10.0.0.5"},
    }
    container = {
        "name": "c",
        "env": [
            {"name": "MY_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "ADDRESS", "value": "$(MY_POD_IP):6379"},
        ],
    }
    env = container_env(pod, container)
    assert (env["MY_POD_IP"], env["NAME"], env["NS"], env["ADDRESS"]) == ("10.0.0.5", "p1", "ns", "10.0.0.5:6379")
    assert env["HOSTNAME"] == "p1" and "/bin" in env["PATH"]
    assert command_line({"command": ["echo"], "args": ["$(NAME)"]}, env) == ["echo", "p1"]
    assert command_line({}, env) == ["/bin/bash"]
    assert "PYTHONPATH" not in env


def test_an_image_the_node_has_runs_its_own_packages_and_commands_first():
    pod = {"metadata": {"name": "p1", "namespace": "ns"}, "spec": {}, "status": {}}
    env = container_env(pod, {"name": "c"}, image_root="/images/ray-operator-0.1.0")
    assert env["PYTHONPATH"] == "/images/ray-operator-0.1.0"
    assert env["PATH"].startswith("/images/ray-operator-0.1.0/bin:") and env["PATH"].endswith(":/bin")


def test_pods_find_ray_from_a_venv_with_system_site_packages(tmp_path):
    """Such a venv has no `ray` command of its own: the pod's PATH leads to the one of the Ray it imports."""
    import os
    import shutil
    import subprocess
    import sys

    from tests.harness.files import ROOT

    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(tmp_path / "venv")],
        check=True,
        timeout=120,
    )
    assert not (tmp_path / "venv" / "bin" / "ray").exists()
    path = subprocess.run(
        [
            str(tmp_path / "venv" / "bin" / "python"),
            "-c",
            "from pod_runtime.containers import container_env; "
            "print(container_env({'metadata': {'name': 'p'}}, {})['PATH'])",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout.strip()
    assert path.split(":")[0] == str(tmp_path / "venv" / "bin")  # the venv's python first
    assert shutil.which("ray", path=path)


def test_env_from_secret_and_config_map_keys():
    container = {
        "env": [
            {"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
            {"name": "C", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": True}}},
            {"name": "D", "value": "$(A)-$(B)"},
        ]
    }
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [container]}}
    assert env_references(pod) == [
        (("secret", "s", "k"), False),
        (("configmap", "c", "k"), False),
        (("secret", "gone", "k"), True),
    ]
    env = container_env(pod, container, referenced={("secret", "s", "k"): "x", ("configmap", "c", "k"): "y"})
    assert (env["A"], env["B"], "C" in env, env["D"]) == ("x", "y", False, "x-y")
