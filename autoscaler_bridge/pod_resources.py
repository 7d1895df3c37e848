"""What one pod of a podType offers to Ray.

CPU, GPU and memory are read from the Ray container's resource limits, falling
back to its requests, and the podType's `rayResources` are merged over them (an
explicit `CPU`, `GPU` or `memory` there wins).

Ray schedules whole units, so quantities are rounded *up* to an integer, as
Ray's own KubeRay converter does: a CPU limit of `500m` is 1 Ray CPU, `1.5` is 2;
memory is a whole number of bytes (`1.5Ki` is 1536).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autoscaler_bridge.names import RAY_CONTAINER_NAME
from autoscaler_bridge.quantities import parse_quantity, round_up

GPU_RESOURCE_NAMES = ("nvidia.com/gpu", "amd.com/gpu")
_RAY_NAME_OF = {"cpu": "CPU", "memory": "memory", **{g: "GPU" for g in GPU_RESOURCE_NAMES}}


def ray_container_index(pod_config: Mapping[str, Any]) -> int:
    """The Ray container: the one named `ray-node` (the legacy chart's name), else the first."""
    containers = pod_config["spec"]["containers"]
    for index, container in enumerate(containers):
        if container.get("name") == RAY_CONTAINER_NAME:
            return index
    return 0


def container_ray_resources(container: Mapping[str, Any]) -> dict[str, int]:
    """CPU, GPU and memory of a container as Ray sees them (limits first, then requests)."""
    found: dict[str, int] = {}
    resources = container.get("resources") or {}
    for section in ("limits", "requests"):
        for name, value in (resources.get(section) or {}).items():
            ray_name = _RAY_NAME_OF.get(name)
            if ray_name and ray_name not in found:
                found[ray_name] = round_up(parse_quantity(value))
    if found.get("GPU") == 0:
        del found["GPU"]
    return found


def pod_type_resources(pod_type: Mapping[str, Any]) -> dict[str, int]:
    """The resources the autoscaler plans with for one pod of this podType."""
    pod_config = pod_type["podConfig"]
    container = pod_config["spec"]["containers"][ray_container_index(pod_config)]
    resources = container_ray_resources(container)
    resources.update(pod_type.get("rayResources") or {})
    return resources
