"""Where a RayCluster's Ray token is made and kept: the Secret `<cluster>-ray-auth`.

The operator makes the Secret once, with a random token, owned by the RayCluster (so Kubernetes deletes it with
the cluster), before the cluster's first head pod; it never rotates it. The Ray pods read the token through a
`secretKeyRef`; the operator reads it from the Secret whenever it starts the cluster's autoscaler, so a
restarted operator finds every cluster's token where it was. A Secret of the same name owned by an earlier
RayCluster of that name (not yet collected) is replaced; one the user made beforehand is used as it is.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from autoscaler_bridge.kube_client import KubeCalls
from autoscaler_bridge.names import API_GROUP, API_VERSION, KIND
from autoscaler_bridge.ray_auth import SECRET_KEY, secret_name
from autoscaler_bridge.ray_pod import cluster_labels, owner_references


class TokenSecretError(Exception):
    """The Secret exists but holds no usable token: the user's to fix."""


def build_secret(cluster_name: str, provider_config: Mapping[str, Any], token: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret_name(cluster_name),
            "namespace": provider_config["namespace"],
            "labels": cluster_labels(cluster_name, "ray-auth"),
            "ownerReferences": owner_references(provider_config),
        },
        "data": {SECRET_KEY: base64.b64encode(token.encode()).decode()},
    }


def _left_by_another(secret: Any, provider_config: Mapping[str, Any]) -> bool:
    """Owned by a RayCluster of ours (this API group and version) of the same name that is not this one (deleted, its
    Secret not yet collected). A Secret owned by another kind of RayCluster (KubeRay's ray.io one names its token
    Secret alike) is never taken for a leftover: it is not ours to delete."""
    owner = provider_config.get("owner") or {}
    ours = [
        o
        for o in secret.metadata.owner_references or []
        if o.kind == KIND and o.api_version == owner.get("apiVersion", f"{API_GROUP}/{API_VERSION}")
    ]
    return bool(owner.get("uid") and ours and all(o.uid != owner["uid"] for o in ours))


def _token_of(secret: Any, key: str = SECRET_KEY) -> str:
    value = (secret.data or {}).get(key)
    token = base64.b64decode(value).decode(errors="replace").strip() if value else ""
    if not token:
        raise TokenSecretError(f"the Secret {secret.metadata.name} has no {key!r} key with a token")
    return token


def read_referenced_token(calls: KubeCalls, namespace: str, name: str, key: str) -> str:
    """The token in the user's Secret that the head's template names (`valueFrom.secretKeyRef`)."""
    try:
        secret = calls(calls.core.read_namespaced_secret, name, namespace)
    except ApiException as error:
        if error.status == 404:
            raise TokenSecretError(f"the Secret {name} that the head's RAY_AUTH_TOKEN names does not exist") from None
        raise
    return _token_of(secret, key)


def read_token(calls: KubeCalls, cluster_name: str, provider_config: Mapping[str, Any]) -> str | None:
    """The cluster's token; None when its Secret does not exist (or is an earlier cluster's)."""
    try:
        secret = calls(calls.core.read_namespaced_secret, secret_name(cluster_name), provider_config["namespace"])
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return None if _left_by_another(secret, provider_config) else _token_of(secret)


def ensure_token(calls: KubeCalls, cluster_name: str, provider_config: Mapping[str, Any]) -> tuple[str, bool]:
    """The cluster's token, its Secret made first if there is none; and whether it was made now."""
    namespace = provider_config["namespace"]
    name = secret_name(cluster_name)
    secret: Any = None
    try:
        secret = calls(calls.core.read_namespaced_secret, name, namespace)
    except ApiException as error:
        if error.status != 404:
            raise
    if secret is not None and not _left_by_another(secret, provider_config):
        return _token_of(secret), False
    if secret is not None:
        try:
            calls(
                calls.core.delete_namespaced_secret,
                name,
                namespace,
                body={"preconditions": {"uid": secret.metadata.uid}},
            )
        except ApiException as error:
            if error.status != 404:  # collected meanwhile
                raise
    token = secrets.token_hex(32)  # 256 bits, as Ray's own `ray get-auth-token --generate`
    calls(calls.core.create_namespaced_secret, namespace, build_secret(cluster_name, provider_config, token))
    return token, True
