"""What the shipped code imports against what each distribution's setup.cfg declares (the operator's, and the
sandbox's in sandbox/), and the one-way rule: the operator never imports the local Kubernetes (the API server and pod
runtime of the sandbox), except inside `ray-operator sandbox`."""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.files import ROOT

SHIPPED = {
    "ray_operator": ROOT / "operator/ray_operator",
    "autoscaler_bridge": ROOT / "autoscaler_bridge",
    "kube_apiserver": ROOT / "kube_apiserver",
    "pod_runtime": ROOT / "pod_runtime",
}
LOCAL_KUBERNETES = ("kube_apiserver", "pod_runtime")
# Each distribution's setup.cfg and the packages it ships: the operator alone, and the sandbox's local Kubernetes.
DISTRIBUTIONS = {"setup.cfg": ("ray_operator", "autoscaler_bridge"), "sandbox/setup.cfg": LOCAL_KUBERNETES}


def declared(setup_cfg: str) -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / setup_cfg)
    lines = config["options"]["install_requires"].strip().splitlines()
    return {re.split(r"[\[<>=~! ;]", line.strip(), maxsplit=1)[0].lower().replace("_", "-") for line in lines}


def imported_top_levels(packages: tuple[str, ...]) -> set[str]:
    """Top-level modules these packages import, outside the standard library and the project."""
    names = set()
    for package in packages:
        for path in SHIPPED[package].glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - set(SHIPPED) - {"__future__"}


@pytest.mark.parametrize("setup_cfg", DISTRIBUTIONS)
def test_every_import_is_declared_and_every_declaration_imported(setup_cfg):
    providers = importlib.metadata.packages_distributions()
    imported = imported_top_levels(DISTRIBUTIONS[setup_cfg])
    used = {dist.lower().replace("_", "-") for name in imported for dist in providers.get(name, [name])}
    assert used - declared(setup_cfg) == set(), f"imported but not declared in {setup_cfg}"
    assert declared(setup_cfg) - used == set(), f"declared in {setup_cfg} but imported nowhere"


def test_the_operator_does_not_declare_what_only_the_sandbox_needs():
    assert declared("setup.cfg").isdisjoint({"cryptography", "kubernetes-validate", "cel-python", "jsonschema"})


def test_the_operator_never_imports_the_local_kubernetes():
    """Every module of the operator and its bridge imported, and nothing of the sandbox's API server or pod runtime
    with them (`ray-operator sandbox` imports them only when it runs)."""
    modules = [
        f"{package}.{path.stem}"
        for package in ("ray_operator", "autoscaler_bridge")
        for path in SHIPPED[package].glob("*.py")
        if path.stem not in ("__init__", "__main__")
    ]
    script = (
        f"import importlib, sys\nfor m in {modules!r}:\n    importlib.import_module(m)\nprint(' '.join(sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300, cwd=ROOT
    ).stdout.split()
    assert "ray_operator.sandbox" in loaded
    assert [m for m in loaded if m.split(".")[0] in (*LOCAL_KUBERNETES, "control_plane", "tests")] == []


def imports_of(path: Path) -> set[str]:
    """The modules a test module imports, with what the tests' own modules it imports import in turn."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    for name in [n for n in names if n.startswith("tests.")]:
        module = ROOT / (name.replace(".", "/") + ".py")
        if module.exists():
            names |= imports_of(module)
    return names


# Makes the sandbox's packages and the control plane unimportable, as on a machine with the operator alone.
WITHOUT_SANDBOX = """
import importlib.abc, sys
class NoSandbox(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"no module named {{name!r}} (the sandbox is not installed)")
sys.meta_path.insert(0, NoSandbox())
import pytest
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "--collect-only", *sys.argv[1:]]))
"""


def test_the_unit_tests_of_pure_code_need_no_sandbox():
    """Every unit test module that does not itself meet an API server collects with the sandbox's API server, pod
    runtime and the control plane unimportable: tests/conftest.py and the harness import them only when needed."""
    blocked = (*LOCAL_KUBERNETES, "control_plane")
    pure = [
        str(path)
        for path in sorted((ROOT / "tests/unit").glob("test_*.py"))
        if not any(name.split(".")[0] in blocked for name in imports_of(path))
    ]
    assert len(pure) > 10
    run = subprocess.run(
        [sys.executable, "-c", WITHOUT_SANDBOX.format(blocked=set(blocked)), *pure],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout[-3000:]
