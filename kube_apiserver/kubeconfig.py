"""A kubeconfig file pointing kubectl, Helm and the `kubernetes` client at a server."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml


def kubeconfig(
    url: str, token: str | None = None, namespace: str = "default", ca_pem: bytes | None = None, name: str = "local"
) -> dict:
    user: dict = {"token": token} if token else {}
    cluster: dict = {"server": url}
    if ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}],
        "current-context": name,
        "preferences": {},
    }


def write_kubeconfig(
    path: Path, url: str, token: str | None = None, namespace: str = "default", ca_pem: bytes | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(kubeconfig(url, token, namespace, ca_pem), sort_keys=False))
    path.chmod(0o600)
    return path
