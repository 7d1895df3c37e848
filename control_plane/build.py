"""Where the control plane's binaries come from: `go build` of the Go modules beside this file, through the Go
module proxy, into the ignored `.tools/control-plane/<pins>/`; built once and reused while the pins (each module's
go.mod and go.sum, and the Go toolchain) hold."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOOLS = HERE.parent / ".tools" / "control-plane"
BUILD_TIMEOUT = 3600  # a cold build on 2 cores takes ~10 min; module downloads come first

# component -> (its Go module directory here, the package that is its main)
COMPONENTS = {
    "etcd": ("etcd", "."),
    "kube-apiserver": ("kubernetes", "k8s.io/kubernetes/cmd/kube-apiserver"),
    "kube-controller-manager": ("kubernetes", "k8s.io/kubernetes/cmd/kube-controller-manager"),
    "kube-scheduler": ("kubernetes", "k8s.io/kubernetes/cmd/kube-scheduler"),
}


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started; the message names the step."""


def kubernetes_version() -> str:
    """The pinned k8s.io/kubernetes version (e.g. v1.36.3), from control_plane/kubernetes/go.mod."""
    match = re.search(r"^\s*k8s\.io/kubernetes (v\S+)", (HERE / "kubernetes" / "go.mod").read_text(), re.MULTILINE)
    if match is None:
        raise ControlPlaneError("control_plane/kubernetes/go.mod does not require k8s.io/kubernetes")
    return match.group(1)


def _go() -> str:
    go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")  # where Go's own installer puts it
    if go is None:
        raise ControlPlaneError("building the control plane needs Go (1.26 for Kubernetes 1.36): `go` is not on PATH")
    return go


def _go_env() -> dict[str, str]:
    return {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false -mod=readonly"}


def _pins(go: str) -> str:
    digest = hashlib.sha256()
    digest.update(subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout.encode())
    for module in sorted({directory for directory, _ in COMPONENTS.values()}):
        for name in ("go.mod", "go.sum", "main.go"):
            path = HERE / module / name
            if path.exists():
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _ldflags() -> str:
    version = kubernetes_version()
    major, minor = version.lstrip("v").split(".")[:2]
    stamp = "k8s.io/component-base/version"
    return " ".join(
        [
            "-s",
            "-w",
            f"-X {stamp}.gitVersion={version}",
            f"-X {stamp}.gitMajor={major}",
            f"-X {stamp}.gitMinor={minor}",
            f"-X {stamp}.gitTreeState=clean",
        ]
    )


def binaries() -> dict[str, Path]:
    """Each component's binary, built first if these pins were never built here."""
    go = _go()
    target = TOOLS / _pins(go)
    if all((target / name).exists() for name in COMPONENTS):
        return {name: target / name for name in COMPONENTS}
    partial = target.with_name(target.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name, (module, package) in COMPONENTS.items():  # one Go build cache: the second command only links
        command = [go, "build", "-trimpath", "-ldflags", _ldflags(), "-o", str(partial / name), package]
        result = subprocess.run(
            command, cwd=HERE / module, env=_go_env(), capture_output=True, text=True, timeout=BUILD_TIMEOUT
        )
        if result.returncode != 0:
            raise ControlPlaneError(
                f"building {name} (`go build {package}` in control_plane/{module}) failed:\n"
                + "\n".join(result.stderr.splitlines()[-30:])
            )
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return {name: target / name for name in COMPONENTS}
