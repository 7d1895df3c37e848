"""Everything that is wrong with a RayCluster, all at once, each with its path and value.

On a real API server the CRD's schema and CEL rules refuse most of this at
admission. The operator checks again because a RayCluster can reach it by
other ways (an older CRD, an API server without CEL, `ray-operator render` of a
file), and because some rules no schema can say: quantities that Ray must
understand, a `ray start` among the start commands, names that must fit into
the pod and Service names derived from them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from autoscaler_bridge import ray_auth, ray_start
from autoscaler_bridge.ray_auth import AUTH_MODES, AUTH_TOKEN
from autoscaler_bridge.names import (
    API_GROUP,
    API_VERSION,
    KIND,
    MAX_CLUSTER_NAME_LENGTH,
    is_dns1035_label,
    is_dns1123_label,
    is_label_value,
)
from autoscaler_bridge.pod_resources import ray_container_index
from autoscaler_bridge.quantities import INT64_MAX, amount_problem, count_problem, cut, parse_quantity, quote

MAX_PROBLEMS = 20  # listed of one RayCluster; more are counted
MAX_DEPTH = 64  # levels of nesting: a Pod's deepest fields are about 15 levels down in a RayCluster
MAX_BYTES = 3 * 2**20  # more than etcd stores of one object (1.5 MiB): only a file can be larger


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


def _key(name: Any) -> str:
    """A map key as a problem's path names it."""
    return name if isinstance(name, str) and len(name) <= 60 else quote(name)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class _Checker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, cut(message, 300)))

    def mapping(self, value: Any, path: str, required: bool = False) -> TypeGuard[Mapping[str, Any]]:
        """True when value is a mapping; records a problem if it is present but is not one."""
        if value is None:
            if required:
                self.add(path, "is required")
            return False
        if not isinstance(value, Mapping):
            self.add(path, f"{quote(value)} is not an object")
            return False
        return True

    def count(self, value: Any, path: str) -> None:
        """A number of workers, if given."""
        problem = None if value is None else count_problem(value)
        if problem:
            self.add(path, problem)

    def amount(self, value: Any, path: str, integer: bool) -> None:
        """A non-negative finite number (a whole one when `integer`), if given."""
        problem = None if value is None else amount_problem(value, integer)
        if problem:
            self.add(path, problem)

    def list_of_mappings(self, value: Any, path: str) -> list[Mapping[str, Any]]:
        """The items of a list of objects (none if it is absent); records a problem for each that is not one."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(path, f"{quote(value)} is not a list")
            return []
        return [item for i, item in enumerate(value) if self.mapping(item, f"{path}[{i}]", required=True)]

    def named(self, items: list[Mapping[str, Any]], path: str) -> None:
        """Each item of a list of objects has a `name` string."""
        for i, item in enumerate(items):
            if not isinstance(item.get("name"), str) or not item.get("name"):
                self.add(f"{path}[{i}].name", "is required")

    def string_list(self, value: Any, path: str) -> bool:
        if value is None:
            return False
        if not isinstance(value, list):
            self.add(path, f"{quote(value)} is not a list of shell commands")
            return False
        ok = True
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.add(f"{path}[{i}]", f"{quote(item)} is not a string")
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
            self.add(f"{path}[{index}]", f"--port {quote(port)} is not a port number")

    def metadata(self, raycluster: Mapping[str, Any]) -> None:
        api_version = raycluster.get("apiVersion")
        if api_version is not None and api_version != f"{API_GROUP}/{API_VERSION}":
            self.add("apiVersion", f"{quote(api_version)} is not {API_GROUP}/{API_VERSION}")
        kind = raycluster.get("kind")
        if kind is not None and kind != KIND:
            self.add("kind", f"{quote(kind)} is not {KIND}")
        metadata = raycluster.get("metadata")
        if not self.mapping(metadata, "metadata", required=True):
            return
        name = metadata.get("name")
        if name is None:
            self.add("metadata.name", "is required")
        elif not isinstance(name, str) or not is_dns1035_label(name):
            self.add(
                "metadata.name",
                f"{quote(name)} must be lower-case letters, digits and '-', starting with a letter"
                " (it names the head Service)",
            )
        elif len(name) > MAX_CLUSTER_NAME_LENGTH:
            self.add(
                "metadata.name",
                f"{quote(name)} is longer than {MAX_CLUSTER_NAME_LENGTH} characters"
                " (names derived from it, such as the label value 'ray-<name>-worker', must fit in 63)",
            )

    def spec(self, spec: Mapping[str, Any]) -> None:
        self.count(spec.get("maxWorkers"), "spec.maxWorkers")
        self.amount(spec.get("upscalingSpeed"), "spec.upscalingSpeed", integer=False)
        self.amount(spec.get("idleTimeoutMinutes"), "spec.idleTimeoutMinutes", integer=False)
        self.start_commands(spec.get("headStartRayCommands"), "spec.headStartRayCommands", head=True)
        self.start_commands(spec.get("workerStartRayCommands"), "spec.workerStartRayCommands", head=False)
        self.service_ports(spec.get("headServicePorts"))
        if not isinstance(spec.get("headPodDisruptionBudget", True), bool):
            self.add("spec.headPodDisruptionBudget", f"{quote(spec['headPodDisruptionBudget'])} is not true or false")
        mode = spec.get("rayAuthentication", AUTH_TOKEN)
        if mode not in AUTH_MODES:
            self.add("spec.rayAuthentication", f"{quote(mode)} is not one of {', '.join(AUTH_MODES)}")
        names = self.pod_types(spec.get("podTypes"))

        head = spec.get("headPodType")
        if head is None:
            self.add("spec.headPodType", "is required")
        elif not isinstance(head, str):
            self.add("spec.headPodType", f"{quote(head)} is not a string")
        elif names is not None and head not in names:
            self.add(
                "spec.headPodType",
                f"{quote(head)} is not one of the podTypes ({', '.join(names) or 'none'})",
            )
        elif mode in AUTH_MODES and not self.problems:  # the head's template is sound: where is its token?
            index = next(i for i, p in enumerate(spec["podTypes"]) if p["name"] == head)
            problem = ray_auth.token_source_problem(mode, spec["podTypes"][index]["podConfig"])
            if problem:
                self.add(f"spec.podTypes[{index}].podConfig", problem)

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
            self.add(path, f"{quote(ports)} is not a list")
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
                self.add(f"{item}.name", f"{quote(name)} appears twice")
            else:
                seen.add(name)
            number = port.get("port")
            if not (_is_int(number) and 0 < number < 65536):
                self.add(f"{item}.port", f"{quote(number)} is not a port number (1-65535)")
            target = port.get("targetPort")
            if target is not None and not (
                (_is_int(target) and 0 < target < 65536) or (isinstance(target, str) and target)
            ):
                self.add(f"{item}.targetPort", f"{quote(target)} is neither a port number nor a name")

    def pod_types(self, pod_types: Any) -> list[str] | None:
        """Checks every podType; returns their names (None when there is no list)."""
        path = "spec.podTypes"
        if pod_types is None:
            self.add(path, "is required")
            return None
        if not isinstance(pod_types, list):
            self.add(path, f"{quote(pod_types)} is not a list")
            return None
        if not pod_types:
            self.add(path, "is empty: at least the head's podType is needed")
        names: dict[str, int] = {}  # name → index
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
                    f"{quote(name)} must be at most 63 letters, digits, '-', '_' or '.',"
                    " starting and ending with a letter or digit",
                )
            elif name in names:
                self.add(f"{item}.name", f"{quote(name)} is the name of podTypes[{names[name]}] already")
            else:
                names[name] = i
            self.pod_type(pod_type, item)
        return list(names)

    def pod_type(self, pod_type: Mapping[str, Any], path: str) -> None:
        min_workers, max_workers = pod_type.get("minWorkers"), pod_type.get("maxWorkers")
        self.count(min_workers, f"{path}.minWorkers")
        self.count(max_workers, f"{path}.maxWorkers")
        if _is_int(min_workers) and _is_int(max_workers) and max_workers < min_workers:
            self.add(f"{path}.maxWorkers", f"{max_workers} is less than minWorkers {min_workers}")

        ray_resources = pod_type.get("rayResources")
        if self.mapping(ray_resources, f"{path}.rayResources"):
            for key, value in ray_resources.items():
                if not isinstance(key, str) or not key:
                    self.add(f"{path}.rayResources", f"{quote(key)} is not a resource name")
                else:
                    self.amount(value, f"{path}.rayResources.{_key(key)}", integer=True)
                    if value is None:
                        self.add(f"{path}.rayResources.{_key(key)}", "None is not a whole number")

        # How long a deleted worker drains, bounded by the grace period its template may set.
        self.count(pod_type.get("drainTimeoutSeconds"), f"{path}.drainTimeoutSeconds")
        pod_config = pod_type.get("podConfig")
        pod_spec = pod_config.get("spec") if isinstance(pod_config, Mapping) else None
        if isinstance(pod_spec, Mapping):
            grace = "terminationGracePeriodSeconds"
            self.count(pod_spec.get(grace), f"{path}.podConfig.spec.{grace}")

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
            self.add(f"{path}.kind", f"{quote(kind)} is not Pod")
        self.pod_metadata(pod_config.get("metadata"), f"{path}.metadata")
        spec = pod_config.get("spec")
        if not self.mapping(spec, f"{path}.spec", required=True):
            return
        self.named(self.list_of_mappings(spec.get("volumes"), f"{path}.spec.volumes"), f"{path}.spec.volumes")
        init_containers = self.list_of_mappings(spec.get("initContainers"), f"{path}.spec.initContainers")
        for i, container in enumerate(init_containers):
            self.container(container, f"{path}.spec.initContainers[{i}]")
        containers = spec.get("containers")
        if not isinstance(containers, list) or not containers:
            self.add(f"{path}.spec.containers", "needs at least one container to run Ray in")
            return
        for i, container in enumerate(containers):
            if self.mapping(container, f"{path}.spec.containers[{i}]", required=True):
                self.container(container, f"{path}.spec.containers[{i}]")
        if not all(isinstance(c, Mapping) for c in containers):
            return
        index = ray_container_index(pod_config)
        self.ray_container(containers[index], f"{path}.spec.containers[{index}]", ray_resources)

    def pod_metadata(self, metadata: Any, path: str) -> None:
        if not self.mapping(metadata, path):
            return
        for key in ("labels", "annotations"):
            values = metadata.get(key)
            if self.mapping(values, f"{path}.{key}"):
                for name, value in values.items():
                    if not isinstance(name, str) or not isinstance(value, str):
                        self.add(f"{path}.{key}", f"{quote(name)}: {quote(value)} is not a string to a string")
        self.list_of_mappings(metadata.get("ownerReferences"), f"{path}.ownerReferences")

    def container(self, container: Mapping[str, Any], path: str) -> None:
        """What the operator reads of any container: its name, env, ports, mounts and resource quantities."""
        name = container.get("name")
        if not isinstance(name, str) or not name:
            self.add(f"{path}.name", "is required")
        elif not is_dns1123_label(name):
            self.add(
                f"{path}.name",
                f"{quote(name)} must be at most 63 lower-case letters, digits and '-', starting and ending with a"
                " letter or digit (Kubernetes refuses the pod otherwise)",
            )
        self.named(self.list_of_mappings(container.get("env"), f"{path}.env"), f"{path}.env")
        for i, port in enumerate(self.list_of_mappings(container.get("ports"), f"{path}.ports")):
            number = port.get("containerPort")
            if number is not None and not (_is_int(number) and 0 < number < 65536):
                self.add(f"{path}.ports[{i}].containerPort", f"{quote(number)} is not a port number (1-65535)")
        for i, mount in enumerate(self.list_of_mappings(container.get("volumeMounts"), f"{path}.volumeMounts")):
            if not isinstance(mount.get("mountPath"), str):
                self.add(f"{path}.volumeMounts[{i}].mountPath", "is required")
        for key in ("command", "args"):
            self.string_list(container.get(key), f"{path}.{key}")
        resources = container.get("resources")
        if not self.mapping(resources, f"{path}.resources"):
            return
        for section in ("limits", "requests"):
            values = resources.get(section)
            if not self.mapping(values, f"{path}.resources.{section}"):
                continue
            for name, value in values.items():
                try:
                    parse_quantity(value)
                except ValueError as error:
                    self.add(f"{path}.resources.{section}.{_key(name)}", str(error))

    def ray_container(self, container: Mapping[str, Any], path: str, ray_resources: Mapping[str, Any]) -> None:
        resources = container.get("resources")
        sections = [resources.get(s) for s in ("limits", "requests")] if isinstance(resources, Mapping) else []
        given = {name for section in sections if isinstance(section, Mapping) for name in section}
        if "CPU" not in ray_resources and "cpu" not in given:
            self.add(
                f"{path}.resources",
                "no CPU given: set limits.cpu (or requests.cpu) of the Ray container,"
                " or rayResources.CPU, so the autoscaler knows what a pod offers",
            )


def _data_problems(raycluster: Any) -> list[Problem]:
    """Where a RayCluster is not what the Kubernetes API could hold, nests deeper than MAX_DEPTH or is larger than
    MAX_BYTES: JSON with string keys, whole numbers within int64, finite numbers. Walked without recursion, so no
    nesting depth can overflow the stack; a deeper nesting or a larger object is refused before any code that
    recurses or copies (copying, hashing, sending) sees it, so deriving a config takes time bounded by that size."""
    problems: list[Problem] = []
    stack: list[tuple[str, int, Any]] = [("", 0, raycluster)]
    size = 0  # bytes of its keys and strings, 8 for anything else: what the checks after this one go through
    while stack and len(problems) <= MAX_PROBLEMS:
        path, depth, value = stack.pop()
        size += len(value) if isinstance(value, str) else 8
        if size > MAX_BYTES:
            return [Problem("RayCluster", f"is larger than Kubernetes stores ({MAX_BYTES // 2**20} MiB)")]
        if depth > MAX_DEPTH:
            problems.append(Problem(path, f"nests deeper than {MAX_DEPTH} levels"))
        elif isinstance(value, Mapping):
            for key in value:
                if isinstance(key, str):
                    size += len(key)
                    stack.append((f"{path}.{key}" if path else key, depth + 1, value[key]))
                else:
                    problems.append(Problem(path or "RayCluster", f"the key {quote(key)} is not a string"))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", depth + 1, item) for i, item in enumerate(value))
        elif _is_int(value):
            if not -INT64_MAX - 1 <= value <= INT64_MAX:
                problems.append(Problem(path, f"{quote(value)} is more than Kubernetes can hold (int64)"))
        elif isinstance(value, float):
            if not math.isfinite(value):
                problems.append(Problem(path, f"{value!r} is not a finite number"))
        elif not (value is None or isinstance(value, (str, bool))):
            problems.append(Problem(path, f"{quote(value)} ({type(value).__name__}) is not JSON: quote it"))
    return problems


def _listed(problems: list[Problem]) -> list[Problem]:
    """At most MAX_PROBLEMS problems, then how many more there are: a message must stay readable."""
    if len(problems) <= MAX_PROBLEMS:
        return problems
    return [*problems[:MAX_PROBLEMS], Problem("RayCluster", f"and {len(problems) - MAX_PROBLEMS} more problems")]


def validate_raycluster(raycluster: Any) -> list[Problem]:
    """Every problem of a RayCluster (a dict as the API returns it), at most MAX_PROBLEMS of them listed; empty
    when it can run. Its time is linear in the RayCluster's size, whatever it holds."""
    checker = _Checker()
    if not isinstance(raycluster, Mapping):
        checker.add("RayCluster", f"{type(raycluster).__name__} is not an object")
        return checker.problems
    checker.metadata(raycluster)
    if checker.mapping(raycluster.get("spec"), "spec", required=True):
        checker.spec(raycluster["spec"])
    data_problems = _data_problems(raycluster)
    said = {p.path for p in data_problems}
    return _listed(data_problems + [p for p in checker.problems if p.path not in said])
