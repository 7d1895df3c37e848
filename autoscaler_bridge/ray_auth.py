"""Where a RayCluster's `rayAuthentication` becomes the environment of its Ray pods and of its autoscaler.

Pure functions. With `token` (the default) every Ray container gets `RAY_AUTH_MODE=token` and `RAY_AUTH_TOKEN` from
the cluster's Secret (a `secretKeyRef`: the token never appears in a pod spec); with `disabled`,
`RAY_AUTH_MODE=disabled`. The mode is always set explicitly, so a stray `~/.ray/auth_token` (which any earlier
`ray.init()` on a machine writes) cannot turn token authentication on by surprise. A template that sets
`RAY_AUTH_MODE` itself wins; `contradictions` says where it contradicts the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autoscaler_bridge.names import head_service_host
from autoscaler_bridge.pod_resources import ray_container_index

AUTH_TOKEN = "token"
AUTH_DISABLED = "disabled"
AUTH_MODES = (AUTH_TOKEN, AUTH_DISABLED)
MODE_VARIABLE = "RAY_AUTH_MODE"
TOKEN_VARIABLE = "RAY_AUTH_TOKEN"
TOKEN_PATH_VARIABLE = "RAY_AUTH_TOKEN_PATH"
# Where Ray reads a token from besides RAY_AUTH_TOKEN: a template setting either brings its own token.
_TOKEN_SOURCES = (TOKEN_VARIABLE, TOKEN_PATH_VARIABLE)
SECRET_KEY = "token"
# The first Ray release with token authentication (`RAY_AUTH_MODE=token`).
FIRST_RAY_WITH_TOKEN_AUTH = (2, 52)


def secret_name(cluster_name: str) -> str:
    """The Secret holding a cluster's token."""
    return f"{cluster_name}-ray-auth"


def spec_mode(raycluster: Mapping[str, Any]) -> str:
    return str((raycluster.get("spec") or {}).get("rayAuthentication") or AUTH_TOKEN)


def _ray_container(pod_config: Mapping[str, Any]) -> Mapping[str, Any]:
    return pod_config["spec"]["containers"][ray_container_index(pod_config)]


def _literal_env(container: Mapping[str, Any]) -> dict[str, str | None]:
    """The container's env by name: its literal value, or None when it comes from elsewhere (valueFrom)."""
    return {e.get("name"): (str(e["value"]) if "value" in e else None) for e in container.get("env") or []}


def pod_mode(mode: str, pod_config: Mapping[str, Any]) -> str:
    """The mode a podType's Ray runs in: its template's literal RAY_AUTH_MODE if it sets one, else the field's."""
    own = _literal_env(_ray_container(pod_config)).get(MODE_VARIABLE)
    return own.lower() if own else mode


def auth_env(mode: str, cluster_name: str, pod_config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The variables to add to a podType's Ray container (none that its template sets itself)."""
    env = _literal_env(_ray_container(pod_config))
    added: list[dict[str, Any]] = []
    if MODE_VARIABLE not in env:
        added.append({"name": MODE_VARIABLE, "value": mode})
    if pod_mode(mode, pod_config) == AUTH_TOKEN and not any(name in env for name in _TOKEN_SOURCES):
        reference = {"secretKeyRef": {"name": secret_name(cluster_name), "key": SECRET_KEY}}
        added.append({"name": TOKEN_VARIABLE, "valueFrom": reference})
    return added


def needs_secret(mode: str, pod_configs: list[Mapping[str, Any]]) -> bool:
    """Whether any pod reads the cluster's Secret (token mode, with no token of its own)."""
    return any(e["name"] == TOKEN_VARIABLE for config in pod_configs for e in auth_env(mode, "-", config))


def contradictions(mode: str, pod_types: list[Mapping[str, Any]]) -> list[str]:
    """podTypes whose template sets RAY_AUTH_MODE to other than the field: theirs wins, and status says so."""
    found = []
    for pod_type in pod_types:
        own = pod_mode(mode, pod_type["podConfig"])
        if own != mode:
            found.append(
                f"podType {pod_type['name']} sets {MODE_VARIABLE}={own}, which wins over rayAuthentication {mode}"
            )
    return found


def ray_lacks_token_auth(version: tuple[int, int]) -> bool:
    return version < FIRST_RAY_WITH_TOKEN_AUTH


def submit_command(
    cluster_name: str,
    namespace: str,
    address: str,
    job: str = "-- <command>",
    secret: str | None = None,
    key: str = SECRET_KEY,
) -> str:
    """The one command that submits a job to a token-authenticated cluster (its token in the cluster's Secret, or in
    `secret` under `key`)."""
    return (
        f"{MODE_VARIABLE}=token {TOKEN_VARIABLE}=$(kubectl -n {namespace} get secret "
        f"{secret or secret_name(cluster_name)} -o jsonpath='{{.data.{key}}}' | base64 -d) ray job submit "
        f"--address {address} {job}"
    )


def _head_container(raycluster: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = raycluster["spec"]
    head = next(p for p in spec["podTypes"] if p["name"] == spec["headPodType"])
    return _ray_container(head["podConfig"])


def head_token(raycluster: Mapping[str, Any]) -> str | None:
    """The token the head's template sets literally, which the autoscaler then uses; None: the cluster's Secret."""
    return _literal_env(_head_container(raycluster)).get(TOKEN_VARIABLE)


def head_token_secret(raycluster: Mapping[str, Any]) -> tuple[str, str] | None:
    """(Secret, key) the head's template takes RAY_AUTH_TOKEN from (`valueFrom.secretKeyRef`), which the autoscaler
    then reads too; None when it does not."""
    for entry in _head_container(raycluster).get("env") or []:
        if entry.get("name") == TOKEN_VARIABLE:
            reference = (entry.get("valueFrom") or {}).get("secretKeyRef") or {}
            if reference.get("name") and reference.get("key"):
                return str(reference["name"]), str(reference["key"])
    return None


def token_source_problem(mode: str, head_pod_config: Mapping[str, Any]) -> str | None:
    """Why the autoscaler could not read the token a token-mode head brings itself, or None. It reads a literal
    RAY_AUTH_TOKEN, or one from a Secret (`secretKeyRef`); not a file in the pod, nor another reference."""
    if pod_mode(mode, head_pod_config) != AUTH_TOKEN:
        return None
    for entry in _ray_container(head_pod_config).get("env") or []:
        name, source = entry.get("name"), entry.get("valueFrom")
        if name == TOKEN_PATH_VARIABLE:
            return (
                f"{TOKEN_PATH_VARIABLE}: the autoscaler cannot read a token from a file in the head's pod; give "
                f"{TOKEN_VARIABLE} from a Secret (valueFrom.secretKeyRef) or leave the token to the operator's Secret"
            )
        if name == TOKEN_VARIABLE and source is not None:
            reference = source.get("secretKeyRef") if isinstance(source, Mapping) else None
            if not (isinstance(reference, Mapping) and reference.get("name") and reference.get("key")):
                return (
                    f"{TOKEN_VARIABLE}: the autoscaler reads the head's token from a Secret (valueFrom.secretKeyRef "
                    "with name and key) or a value, not from another source"
                )
    return None


def status(raycluster: Mapping[str, Any]) -> dict[str, str]:
    """`status.rayAuthentication`: the mode the head runs in, the Secret, the command that submits a job, and where
    a template's own RAY_AUTH_MODE contradicts the field."""
    metadata, spec = raycluster["metadata"], raycluster["spec"]
    name, namespace = metadata["name"], metadata.get("namespace") or "default"
    mode = spec_mode(raycluster)
    head = next(p for p in spec["podTypes"] if p["name"] == spec["headPodType"])
    result = {"mode": pod_mode(mode, head["podConfig"])}
    if needs_secret(mode, [p["podConfig"] for p in spec["podTypes"]]):
        result["secretName"] = secret_name(name)
    if result["mode"] == AUTH_TOKEN and head_token(raycluster) is None:
        secret, key = head_token_secret(raycluster) or (secret_name(name), SECRET_KEY)
        address = f"http://{head_service_host(name, namespace)}:8265"
        result["submitJob"] = submit_command(name, namespace, address, secret=secret, key=key)
    problems = contradictions(mode, spec["podTypes"])
    if problems:
        result["message"] = "; ".join(problems)
    return result
