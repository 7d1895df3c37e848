"""What a container runs: its image (mapped to the local Ray), environment and command line. Pure functions."""

from __future__ import annotations

import functools
import importlib.metadata
import re
import sys
import sysconfig
from pathlib import Path
from typing import Any

RAY_IMAGE = re.compile(r"^(docker\.io/)?rayproject/ray(-ml|-llm)?(:|@|$)")
OPERATOR_IMAGE = re.compile(
    r"^([^/]+/)*ray-operator(:|@|$)"
)  # the image the Dockerfile builds: `ray-operator` is installed
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def supported_image(image: str) -> bool:
    """Any rayproject/ray image runs on the Ray installed beside this runtime; a ray-operator image on the
    `ray-operator` command installed with it."""
    return bool(RAY_IMAGE.match(image or "") or OPERATOR_IMAGE.match(image or ""))


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined variables are replaced, $$ escapes, the rest stays."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(replace, text)


def field_value(pod: dict[str, Any], path: str) -> str:
    values = {
        "metadata.name": pod["metadata"]["name"],
        "metadata.namespace": pod["metadata"].get("namespace", ""),
        "metadata.uid": pod["metadata"].get("uid", ""),
        "spec.nodeName": (pod.get("spec") or {}).get("nodeName", ""),
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName", ""),
        "status.podIP": (pod.get("status") or {}).get("podIP", ""),
        "status.hostIP": (pod.get("status") or {}).get("hostIP", ""),
    }
    return values.get(path, "")


@functools.lru_cache(maxsize=1)
def interpreter_path() -> str:
    """PATH entries where this interpreter's commands are: its environment's scripts, then the folder of the
    `ray` command of the Ray it imports (in a venv made with --system-site-packages, or a user install, that is
    not the venv's), then the prefix's bin."""
    folders = [sysconfig.get_path("scripts")]
    try:
        ray = importlib.metadata.distribution("ray")
        folders += [
            str(Path(str(ray.locate_file(f))).resolve().parent)
            for f in ray.files or []
            if f.name == "ray" and f.parent.name == "bin"
        ]
    except importlib.metadata.PackageNotFoundError:
        pass
    return ":".join(dict.fromkeys([*folders, f"{sys.prefix}/bin"]))


def dirs_to_keep(paths: list[str]) -> list[str]:
    """The directories under /tmp among `paths` and this interpreter's installation (a checkout or a venv under
    /tmp): a pod's private /tmp would hide them, so the pod runtime binds them back into it."""
    candidates = {Path(p).resolve() for p in [sys.prefix, sys.base_prefix, *interpreter_path().split(":"), *paths]}
    under_tmp = {c for c in candidates if Path("/tmp") in c.parents and c.is_dir()}
    return sorted(str(c) for c in under_tmp if not any(other in c.parents for other in under_tmp))


# An env entry's value from an object: (kind of object, its name, the key) -> the value, read by the runtime.
Reference = tuple[str, str, str]
_REFERENCE_KINDS = {"secretKeyRef": "secret", "configMapKeyRef": "configmap"}


def env_references(pod: dict[str, Any]) -> list[tuple[Reference, bool]]:
    """The Secret and ConfigMap keys the pod's containers take env values from, each with whether it is optional."""
    found = []
    for container in pod["spec"]["containers"]:
        for entry in container.get("env") or []:
            for field, kind in _REFERENCE_KINDS.items():
                source = (entry.get("valueFrom") or {}).get(field)
                if source:
                    found.append(((kind, source["name"], source["key"]), bool(source.get("optional"))))
    return found


def container_env(
    pod: dict[str, Any],
    container: dict[str, Any],
    node: dict[str, str] | None = None,
    referenced: dict[Reference, str] | None = None,
    image_root: str | None = None,
) -> dict[str, str]:
    """The container's environment: a minimal base, what the node adds (`node`), then the container's env
    with downward API fields, Secret and ConfigMap keys (`referenced`, read beforehand) and $(VAR)s resolved.
    `image_root`: the directory of the container's image, if the node has it (`pod_runtime --image`): its
    packages and its bin/ commands come before the installed ones."""
    path = f"{interpreter_path()}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env = {
        "PATH": f"{image_root}/bin:{path}" if image_root else path,
        **({"PYTHONPATH": image_root} if image_root else {}),
        "HOME": "/root",
        "HOSTNAME": pod["metadata"]["name"],
        "LANG": "C.UTF-8",
        **(node or {}),
    }
    for entry in container.get("env") or []:
        name = entry.get("name")
        if "value" in entry:
            env[name] = expand(str(entry["value"]), env)
        elif ((entry.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath"):
            env[name] = field_value(pod, entry["valueFrom"]["fieldRef"]["fieldPath"])
        else:
            sources = [(kind, (entry.get("valueFrom") or {}).get(field)) for field, kind in _REFERENCE_KINDS.items()]
            found = [(referenced or {}).get((kind, s["name"], s["key"])) for kind, s in sources if s]
            if found and found[0] is None:
                continue  # an optional key that is not there: no variable, as a kubelet does
            env[name] = found[0] if found else ""
    return env


def command_line(container: dict[str, Any], env: dict[str, str]) -> list[str]:
    """command + args with $(VAR)s expanded; a Ray image without either runs bash, as its entrypoint does."""
    command = list(container.get("command") or []) + list(container.get("args") or [])
    return [expand(part, env) for part in command] or ["/bin/bash"]
