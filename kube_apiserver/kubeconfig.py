"""A kubeconfig file pointing kubectl, Helm and the `kubernetes` client at a server."""

from __future__ import annotations

from pathlib import Path

import yaml


def kubeconfig(url: str, token: str | None = None, namespace: str = "default", name: str = "local") -> dict:
    user: dict = {"token": token} if token else {}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": url}}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}],
        "current-context": name,
        "preferences": {},
    }


def write_kubeconfig(path: Path, url: str, token: str | None = None, namespace: str = "default") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(kubeconfig(url, token, namespace), sort_keys=False))
    path.chmod(0o600)
    return path
