"""The operator as a wheel installs it: the files it ships (the chart's defaults and CRD, the example values) are
found from the installed package, with no checkout around."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def test_an_installed_wheel_renders_and_finds_its_files(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, timeout=300, capture_output=True)
    [wheel] = (tmp_path / "dist").glob("ray_operator-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
                   check=True, timeout=300, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "short.yaml").write_text("podTypes:\n  rayWorkerType:\n    maxWorkers: 7\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    rendered = subprocess.run([str(venv / "bin" / "ray-operator"), "render", "short.yaml"], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=120)
    assert rendered.returncode == 0, rendered.stderr
    assert "max_workers: 7" in rendered.stdout  # the chart's defaults, merged from the installed copy
    found = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import ray_operator.bundled as b; print(b.__file__); print(b.crd()['kind']); "
                            "print(b.example('cpu-only.yaml').read_text().count('podTypes'))"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert found[0].startswith(str(venv)) and found[1:] == ["CustomResourceDefinition", "1"]
