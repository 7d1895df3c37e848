"""Everything that is wrong with a RayCluster, all at once, each with its path and value.

On a real API server the CRD's schema and CEL rules refuse most of this at
admission. The operator checks again because a RayCluster can reach it by
other ways (an older CRD, an API server without CEL, `ray-operator render` of a
file), and because some rules no schema can say: quantities that Ray must
understand, a `ray start` among the start commands, names that must fit into
the pod and Service names derived from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from autoscaler_bridge import ray_start
from autoscaler_bridge.ray_auth import AUTH_MODES, AUTH_TOKEN
from autoscaler_bridge.names import (
    API_GROUP,
    API_VERSION,
    KIND,
    MAX_CLUSTER_NAME_LENGTH,
    is_dns1035_label,
    is_label_value,
)
from autoscaler_bridge.pod_resources import (
    GPU_RESOURCE_NAMES,
    parse_quantity,
    ray_container_index,
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a RayCluster: where (`spec.podTypes[1].maxWorkers`) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidRayCluster(ValueError):
    """A RayCluster that cannot be run; `problems` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Checker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def mapping(self, value: Any, path: str, required: bool = False) -> TypeGuard[Mapping[str, Any]]:
        """True when value is a mapping; records a problem if it is present but is not one."""
        if value is None:
            if required:
                self.add(path, "is required")
            return False
        if not isinstance(value, Mapping):
            self.add(path, f"{value!r} is not an object")
            return False
        return True

    def non_negative(self, value: Any, path: str, integer: bool) -> None:
        if value is None:
            return
        if not (_is_int(value) if integer else _is_number(value)):
            self.add(path, f"{value!r} is not a {'whole number' if integer else 'number'}")
        elif value < 0:
            self.add(path, f"{value!r} is negative")

    def string_list(self, value: Any, path: str) -> bool:
        if value is None:
            return False
        if not isinstance(value, list):
            self.add(path, f"{value!r} is not a list of shell commands")
            return False
        ok = True
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.add(f"{path}[{i}]", f"{item!r} is not a string")
                ok = False
        return ok

    def start_commands(self, value: Any, path: str, head: bool) -> None:
        if not self.string_list(value, path):
            return
        index = ray_start.ray_start_index(value)
        if index is None:
            self.add(path, "no command runs `ray start`: the pod would never join the cluster")
            return
        command = value[index]
        for flag in ray_start.managed_flags_in(command):
            self.add(
                f"{path}[{index}]",
                f"{flag} is set by the operator from the podType's resources and rayResources;"
                " remove it from the command",
            )
        if head and not ray_start.has_flag(command, "--head"):
            self.add(f"{path}[{index}]", "the head's `ray start` needs --head")
        port = ray_start.flag_value(command, "--port")
        if head and port is not None and not (port.isdigit() and 0 < int(port) < 65536):
            self.add(f"{path}[{index}]", f"--port {port!r} is not a port number")

    def metadata(self, raycluster: Mapping[str, Any]) -> None:
        api_version = raycluster.get("apiVersion")
        if api_version is not None and api_version != f"{API_GROUP}/{API_VERSION}":
            self.add("apiVersion", f"{api_version!r} is not {API_GROUP}/{API_VERSION}")
        kind = raycluster.get("kind")
        if kind is not None and kind != KIND:
            self.add("kind", f"{kind!r} is not {KIND}")
        metadata = raycluster.get("metadata")
        if not self.mapping(metadata, "metadata", required=True):
            return
        name = metadata.get("name")
        if name is None:
            self.add("metadata.name", "is required")
        elif not isinstance(name, str) or not is_dns1035_label(name):
            self.add(
                "metadata.name",
                f"{name!r} must be lower-case letters, digits and '-', starting with a letter"
                " (it names the head Service)",
            )
        elif len(name) > MAX_CLUSTER_NAME_LENGTH:
            self.add(
                "metadata.name",
                f"{name!r} is longer than {MAX_CLUSTER_NAME_LENGTH} characters"
                " (names derived from it, such as the label value 'ray-<name>-worker', must fit in 63)",
            )

    def spec(self, spec: Mapping[str, Any]) -> None:
        self.non_negative(spec.get("maxWorkers"), "spec.maxWorkers", integer=True)
        self.non_negative(spec.get("upscalingSpeed"), "spec.upscalingSpeed", integer=False)
        self.non_negative(spec.get("idleTimeoutMinutes"), "spec.idleTimeoutMinutes", integer=False)
        self.start_commands(spec.get("headStartRayCommands"), "spec.headStartRayCommands", head=True)
        self.start_commands(spec.get("workerStartRayCommands"), "spec.workerStartRayCommands", head=False)
        self.service_ports(spec.get("headServicePorts"))
        mode = spec.get("rayAuthentication", AUTH_TOKEN)
        if mode not in AUTH_MODES:
            self.add("spec.rayAuthentication", f"{mode!r} is not one of {', '.join(AUTH_MODES)}")
        names = self.pod_types(spec.get("podTypes"))

        head = spec.get("headPodType")
        if head is None:
            self.add("spec.headPodType", "is required")
        elif not isinstance(head, str):
            self.add("spec.headPodType", f"{head!r} is not a string")
        elif names is not None and head not in names:
            self.add(
                "spec.headPodType",
                f"{head!r} is not one of the podTypes ({', '.join(names) or 'none'})",
            )

        max_workers = spec.get("maxWorkers")
        if _is_int(max_workers) and max_workers >= 0 and isinstance(spec.get("podTypes"), list):
            total_min = sum(
                p.get("minWorkers", 0)
                for p in spec["podTypes"]
                if isinstance(p, Mapping) and _is_int(p.get("minWorkers", 0))
            )
            if total_min > max_workers:
                self.add(
                    "spec.maxWorkers",
                    f"{max_workers} is less than the podTypes' minWorkers together ({total_min})",
                )

    def service_ports(self, ports: Any) -> None:
        path = "spec.headServicePorts"
        if ports is None:
            return
        if not isinstance(ports, list):
            self.add(path, f"{ports!r} is not a list")
            return
        seen: set[str] = set()
        for i, port in enumerate(ports):
            item = f"{path}[{i}]"
            if not self.mapping(port, item, required=True):
                continue
            name = port.get("name")
            if not isinstance(name, str) or not name:
                self.add(f"{item}.name", "is required")
            elif name in seen:
                self.add(f"{item}.name", f"{name!r} appears twice")
            else:
                seen.add(name)
            number = port.get("port")
            if not (_is_int(number) and 0 < number < 65536):
                self.add(f"{item}.port", f"{number!r} is not a port number (1-65535)")
            target = port.get("targetPort")
            if target is not None and not (
                (_is_int(target) and 0 < target < 65536) or (isinstance(target, str) and target)
            ):
                self.add(f"{item}.targetPort", f"{target!r} is neither a port number nor a name")

    def pod_types(self, pod_types: Any) -> list[str] | None:
        """Checks every podType; returns their names (None when there is no list)."""
        path = "spec.podTypes"
        if pod_types is None:
            self.add(path, "is required")
            return None
        if not isinstance(pod_types, list):
            self.add(path, f"{pod_types!r} is not a list")
            return None
        if not pod_types:
            self.add(path, "is empty: at least the head's podType is needed")
        names: list[str] = []
        for i, pod_type in enumerate(pod_types):
            item = f"{path}[{i}]"
            if not self.mapping(pod_type, item, required=True):
                continue
            name = pod_type.get("name")
            if name is None:
                self.add(f"{item}.name", "is required")
            elif not isinstance(name, str) or not is_label_value(name):
                self.add(
                    f"{item}.name",
                    f"{name!r} must be at most 63 letters, digits, '-', '_' or '.',"
                    " starting and ending with a letter or digit",
                )
            elif name in names:
                self.add(f"{item}.name", f"{name!r} is the name of podTypes[{names.index(name)}] already")
            else:
                names.append(name)
            self.pod_type(pod_type, item)
        return names

    def pod_type(self, pod_type: Mapping[str, Any], path: str) -> None:
        min_workers, max_workers = pod_type.get("minWorkers"), pod_type.get("maxWorkers")
        self.non_negative(min_workers, f"{path}.minWorkers", integer=True)
        self.non_negative(max_workers, f"{path}.maxWorkers", integer=True)
        if _is_int(min_workers) and _is_int(max_workers) and max_workers < min_workers:
            self.add(f"{path}.maxWorkers", f"{max_workers} is less than minWorkers {min_workers}")

        ray_resources = pod_type.get("rayResources")
        if self.mapping(ray_resources, f"{path}.rayResources"):
            for key, value in ray_resources.items():
                self.non_negative(value, f"{path}.rayResources.{key}", integer=True)
                if value is None:
                    self.add(f"{path}.rayResources.{key}", "None is not a whole number")

        for key in ("setupCommands", "workerSetupCommands"):
            self.string_list(pod_type.get(key), f"{path}.{key}")
        if "setupCommands" in pod_type and "workerSetupCommands" in pod_type:
            self.add(path, "give setupCommands or workerSetupCommands (its alias), not both")

        self.pod_config(pod_type.get("podConfig"), f"{path}.podConfig", ray_resources or {})

    def pod_config(self, pod_config: Any, path: str, ray_resources: Mapping[str, Any]) -> None:
        if not self.mapping(pod_config, path, required=True):
            return
        kind = pod_config.get("kind")
        if kind is not None and kind != "Pod":
            self.add(f"{path}.kind", f"{kind!r} is not Pod")
        spec = pod_config.get("spec")
        if not self.mapping(spec, f"{path}.spec", required=True):
            return
        containers = spec.get("containers")
        if not isinstance(containers, list) or not containers:
            self.add(f"{path}.spec.containers", "needs at least one container to run Ray in")
            return
        for i, container in enumerate(containers):
            if self.mapping(container, f"{path}.spec.containers[{i}]", required=True):
                if not isinstance(container.get("name"), str) or not container.get("name"):
                    self.add(f"{path}.spec.containers[{i}].name", "is required")
        if not all(isinstance(c, Mapping) for c in containers):
            return
        index = ray_container_index(pod_config)
        self.ray_container(containers[index], f"{path}.spec.containers[{index}]", ray_resources)

    def ray_container(self, container: Mapping[str, Any], path: str, ray_resources: Mapping[str, Any]) -> None:
        resources = container.get("resources") or {}
        if not self.mapping(resources, f"{path}.resources"):
            return
        has_cpu = "CPU" in ray_resources
        for section in ("limits", "requests"):
            values = resources.get(section)
            if not self.mapping(values, f"{path}.resources.{section}"):
                continue
            for name in ("cpu", "memory", *GPU_RESOURCE_NAMES):
                if name in values:
                    has_cpu = has_cpu or name == "cpu"
                    try:
                        parse_quantity(values[name])
                    except ValueError as error:
                        self.add(f"{path}.resources.{section}.{name}", str(error))
        if not has_cpu:
            self.add(
                f"{path}.resources",
                "no CPU given: set limits.cpu (or requests.cpu) of the Ray container,"
                " or rayResources.CPU, so the autoscaler knows what a pod offers",
            )


def validate_raycluster(raycluster: Any) -> list[Problem]:
    """Every problem of a RayCluster (a dict as the API returns it); empty when it can run."""
    checker = _Checker()
    if not isinstance(raycluster, Mapping):
        checker.add("RayCluster", f"{type(raycluster).__name__} is not an object")
        return checker.problems
    checker.metadata(raycluster)
    if checker.mapping(raycluster.get("spec"), "spec", required=True):
        checker.spec(raycluster["spec"])
    return checker.problems
