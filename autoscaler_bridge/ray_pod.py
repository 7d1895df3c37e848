"""Where a podType's pod template becomes a Ray pod, and the head Service is built.

Pure functions: the provider section of the autoscaler config, a podType's
`node_config` and the autoscaler's tags in, Kubernetes objects out.

A Ray pod starts Ray by itself (no `kubectl exec`, no SSH): its Ray container
runs the template's own command (unless it is the legacy chart's placeholder
that only sleeps, which the legacy operator needed for `kubectl exec`), the
podType's setup commands, then the start commands. Into `ray start` the operator
puts `--block` (the container lives as long as Ray), `--no-monitor` on the head
(the operator runs the autoscaler), the node's IP (the autoscaler matches
pods to Ray nodes by it) and the resources the autoscaler plans with.

Ray pods need no Kubernetes API: the ServiceAccount token is not mounted unless
the template names a ServiceAccount or asks for the token itself. /dev/shm (Ray's
object store) is memory, sized to the Ray container's memory so it cannot take
more than the pod was given. Every other field of the template is the user's and
is kept as it is.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray.autoscaler.tags import (
    NODE_KIND_HEAD,
    TAG_RAY_CLUSTER_NAME,
    TAG_RAY_NODE_KIND,
    TAG_RAY_USER_NODE_TYPE,
)

from autoscaler_bridge import drain_on_term, ray_start
from autoscaler_bridge.names import DEFAULT_DRAIN_SECONDS, DRAIN_ANNOTATION, head_service_host, head_service_name
from autoscaler_bridge.pod_resources import ray_container_index

MANAGED_BY = "ray-operator"
SHM_PATH = "/dev/shm"
RAY_COMMAND = ["/bin/bash", "-c"]
DRAIN_MARGIN_SECONDS = 15  # of a worker's grace period, to start the drain and stop Ray

# The head Service's ports: GCS (from the head's `ray start --port`), then these.
HEAD_SERVICE_DEFAULT_PORTS = [
    {"name": "dashboard", "port": 8265},
    {"name": "client", "port": 10001},
    {"name": "metrics", "port": 8080},
]
# Template metadata the API server owns, or that the provider sets per pod.
_METADATA_SET_PER_POD = (
    "name",
    "generateName",
    "namespace",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "generation",
    "managedFields",
)


def cluster_labels(cluster_name: str, component: str) -> dict[str, str]:
    """The `app.kubernetes.io/*` labels of every object of a cluster."""
    return {
        "app.kubernetes.io/name": "ray",
        "app.kubernetes.io/instance": cluster_name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def head_selector(cluster_name: str) -> dict[str, str]:
    """The labels that select a cluster's head pod."""
    return {TAG_RAY_CLUSTER_NAME: cluster_name, TAG_RAY_NODE_KIND: NODE_KIND_HEAD}


def owner_references(provider_config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An ownerReference to the RayCluster, so Kubernetes collects what the operator left."""
    owner = provider_config.get("owner") or {}
    if not owner.get("uid"):
        return []
    return [{**owner, "controller": True, "blockOwnerDeletion": True}]


def pod_name_prefix(cluster_name: str, pod_type: str) -> str:
    """`generateName` of a podType's pods: `<cluster>-<podtype>-`, fit for a 63-char hostname."""
    type_part = re.sub(r"[^a-z0-9-]+", "-", pod_type.lower()).strip("-") or "ray"
    return f"{cluster_name}-{type_part}"[:57].rstrip("-") + "-"


def _ray_start_flags(command: str, head: bool, resources: Mapping[str, int]) -> list[str]:
    flags = []
    if not ray_start.has_flag(command, "--block"):
        flags.append("--block")
    if head and not ray_start.has_flag(command, "--no-monitor"):
        flags.append("--no-monitor")
    if not ray_start.has_flag(command, "--node-ip-address"):
        flags.append("--node-ip-address=$MY_POD_IP")
    if "CPU" in resources:
        flags.append(f"--num-cpus={resources['CPU']}")
    if "GPU" in resources:
        flags.append(f"--num-gpus={resources['GPU']}")
    if "memory" in resources:
        flags.append(f"--memory={resources['memory']}")
    custom = {k: v for k, v in resources.items() if k not in ("CPU", "GPU", "memory")}
    if custom:
        flags.append("--resources=" + shlex.quote(json.dumps(custom, sort_keys=True, separators=(",", ":"))))
    return flags


# A deleted head stops Ray at once (the container's PID 1 would otherwise ignore SIGTERM and wait out its grace period).
STOP_RAY_ON_TERM = "trap 'ray stop >/dev/null 2>&1; exit 143' TERM INT"
# A deleted worker first drains its Ray node (autoscaler_bridge.drain_on_term, with the Ray image's Python), then
# stops Ray (kills it, once its GCS is gone); past its drain deadline it exits EXIT_DEADLINE, its last log line (the
# termination message) saying what still ran.
_DRAIN_SOURCE = (Path(__file__).parent / "drain_on_term.py").read_text()
_DRAIN_SOURCE = _DRAIN_SOURCE[_DRAIN_SOURCE.index("from __future__") :]  # without its docstring
_DRAIN_END = "RAY_OPERATOR_DRAIN_END"


def _drain_on_term(seconds: int) -> str:
    return (
        "drain_then_stop() {\n"
        "code=0\n"
        'if [ -n "$ray_pid" ]; then\n'
        'for python in python3 python; do command -v "$python" >/dev/null && break; done\n'
        f'"$python" - "$ray_pid" {seconds} <<\'{_DRAIN_END}\'\n{_DRAIN_SOURCE}{_DRAIN_END}\n'
        "code=$?\n"
        "fi\n"
        f'if [ "$code" = {drain_on_term.EXIT_GCS_GONE} ]; then ray stop --force >/dev/null 2>&1; '
        "else ray stop >/dev/null 2>&1; fi\n"
        f'[ "$code" != {drain_on_term.EXIT_DEADLINE} ] || exit {drain_on_term.EXIT_DEADLINE}\n'
        "exit 143\n"
        "}\n"
        "trap drain_then_stop TERM INT"
    )


def drain_timing(drain_seconds: int, grace_seconds: int | None) -> tuple[int, int | None]:
    """A worker's drain time and its pod's grace period: the grace the template sets bounds the drain (Ray is
    stopped within it); without one, the grace is the drain and DRAIN_MARGIN_SECONDS to stop Ray (no drain: none)."""
    if grace_seconds is None:
        return drain_seconds, drain_seconds + DRAIN_MARGIN_SECONDS if drain_seconds > 0 else None
    return max(0, min(drain_seconds, grace_seconds - DRAIN_MARGIN_SECONDS)), grace_seconds


def worker_drain_timing(
    provider_config: Mapping[str, Any], pod_type: str, template_spec: Mapping[str, Any]
) -> tuple[int, int | None]:
    """drain_timing() of a podType's workers: its drainTimeoutSeconds and its template's grace period."""
    wanted = (provider_config.get("drain_seconds") or {}).get(pod_type, DEFAULT_DRAIN_SECONDS)
    return drain_timing(wanted, template_spec.get("terminationGracePeriodSeconds"))


def pod_type_drain_seconds(config: Mapping[str, Any], pod_type: str) -> int:
    """How long a podType's deleted workers drain, by a cluster config: worker_drain_timing() of its template."""
    node_type = (config.get("available_node_types") or {}).get(pod_type) or {}
    template_spec = (node_type.get("node_config") or {}).get("spec") or {}
    return worker_drain_timing(config.get("provider") or {}, pod_type, template_spec)[0]


def ray_script(
    setup_commands: list[str],
    start_commands: list[str],
    head: bool,
    resources: Mapping[str, int],
    drain_seconds: int = 0,
) -> str:
    """The shell script of a Ray container: setup, then start commands, stopping at the first failure.

    Each command is a group whose status is that of its last part, as when the
    legacy autoscaler ran them one by one (`ulimit -n 65536; ray start` fails
    only if `ray start` does). The operator's flags follow `ray start` directly,
    so a command like `ray start ... && echo started` keeps working. On SIGTERM
    the script drains the node for up to `drain_seconds` (a worker's), then stops
    Ray and exits.
    """
    commands = list(setup_commands) + list(start_commands)
    found = ray_start.ray_start_index(start_commands)
    assert found is not None, "validation requires a `ray start` among the start commands"
    index = len(setup_commands) + found
    flags = " ".join(_ray_start_flags(commands[index], head, resources))
    commands[index] = ray_start.RAY_START.sub(lambda m: f"{m.group(0)} {flags}", commands[index], count=1)
    lines = [_drain_on_term(drain_seconds) if drain_seconds > 0 and not head else STOP_RAY_ON_TERM]
    for number, command in enumerate(commands):
        # Ray runs in the background so that the shell, the container's PID 1, can act on SIGTERM at once.
        lines.append(
            f"{{ {command}\n}} &\nray_pid=$!\nwait $ray_pid || exit $?"
            if number == index
            else f"{{ {command}\n}} || exit $?"
        )
    return "\n".join(lines) + "\n"


# What the legacy chart's placeholder commands do: keep the container alive for `kubectl exec`.
_PLACEHOLDER = re.compile(r"\bsleep\s+infinity\b|\btail\s+-f\s+/dev/null\b")


def _own_command(container: Mapping[str, Any]) -> str | None:
    """The template's own command and args as one shell line, run before Ray's setup; None when it has none, or
    only the legacy placeholder that sleeps."""
    words = [str(w) for w in [*(container.get("command") or []), *(container.get("args") or [])]]
    if not words or _PLACEHOLDER.search(" ".join(words)):
        return None
    return shlex.join(words)


def _env(cluster_name: str, namespace: str, pod_type: str) -> list[dict[str, Any]]:
    def field(path: str) -> dict[str, Any]:
        return {"valueFrom": {"fieldRef": {"fieldPath": path}}}

    return [
        {"name": "MY_POD_IP", **field("status.podIP")},
        {"name": "RAY_HEAD_IP", "value": head_service_host(cluster_name, namespace)},
        # Ray's autoscaler v2 matches nodes by these.
        {"name": "RAY_CLOUD_INSTANCE_ID", **field("metadata.name")},
        {"name": "RAY_NODE_TYPE_NAME", "value": pod_type},
    ]


def _quantities_as_strings(container: dict[str, Any]) -> None:
    """Resource quantities in the string form the API stores them in (`cpu: 1` is `"1"`)."""
    for section in (container.get("resources") or {}).values():
        if isinstance(section, dict):
            for name, value in section.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    section[name] = str(value)


def _with_shm(spec: dict[str, Any], container: dict[str, Any]) -> None:
    """A memory-backed emptyDir at /dev/shm (Ray's object store), unless one is mounted there; a memory emptyDir
    there without a size gets the container's memory as its size (memory it fills counts against the pod)."""
    mounts = container.setdefault("volumeMounts", [])
    volumes = spec.setdefault("volumes", [])
    mounted = next((m.get("name") for m in mounts if m.get("mountPath") == SHM_PATH), None)
    if mounted is None:
        taken = {v.get("name") for v in volumes}
        mounted = next(n for n in ("dshm", "ray-dshm", "ray-operator-dshm") if n not in taken)
        volumes.append({"name": mounted, "emptyDir": {"medium": "Memory"}})
        mounts.append({"name": mounted, "mountPath": SHM_PATH})
    resources = container.get("resources") or {}
    memory = (resources.get("limits") or {}).get("memory") or (resources.get("requests") or {}).get("memory")
    for volume in volumes:
        empty_dir = volume.get("emptyDir")
        if volume.get("name") == mounted and isinstance(empty_dir, dict) and empty_dir.get("medium") == "Memory":
            if memory and "sizeLimit" not in empty_dir:
                empty_dir["sizeLimit"] = str(memory)


def build_ray_pod(
    provider_config: Mapping[str, Any],
    cluster_name: str,
    node_config: Mapping[str, Any],
    tags: Mapping[str, str],
    resources: Mapping[str, int],
) -> dict[str, Any]:
    """The pod of one Ray node: head or worker (by the `ray-node-type` tag) of the tagged podType."""
    namespace = provider_config["namespace"]
    pod_type = tags[TAG_RAY_USER_NODE_TYPE]
    head = tags[TAG_RAY_NODE_KIND] == NODE_KIND_HEAD
    pod = copy.deepcopy(dict(node_config))
    pod["apiVersion"], pod["kind"] = "v1", "Pod"

    metadata = {k: v for k, v in (pod.get("metadata") or {}).items() if k not in _METADATA_SET_PER_POD}
    metadata["generateName"] = pod_name_prefix(cluster_name, pod_type)
    metadata["namespace"] = namespace
    metadata["labels"] = {
        **(metadata.get("labels") or {}),
        **cluster_labels(cluster_name, "ray-head" if head else "ray-worker"),
        **tags,
        TAG_RAY_CLUSTER_NAME: cluster_name,
    }
    metadata["ownerReferences"] = list(metadata.get("ownerReferences") or []) + owner_references(provider_config)
    pod["metadata"] = metadata
    pod.pop("status", None)

    spec = pod["spec"]
    spec.setdefault("restartPolicy", "Never")
    if not spec.get("serviceAccountName") and not spec.get("serviceAccount"):
        spec.setdefault("automountServiceAccountToken", False)  # Ray needs no Kubernetes API
    container = spec["containers"][ray_container_index(pod)]
    start = provider_config["head_start_ray_commands" if head else "worker_start_ray_commands"]
    own = _own_command(container)
    setup = ([own] if own else []) + (provider_config.get("setup_commands") or {}).get(pod_type, [])
    container["command"] = list(RAY_COMMAND)
    drain_seconds = 0
    if not head:
        drain_seconds, grace = worker_drain_timing(provider_config, pod_type, spec)
        if grace is not None:
            spec["terminationGracePeriodSeconds"] = grace
        if drain_seconds > 0:
            metadata["annotations"] = {**(metadata.get("annotations") or {}), DRAIN_ANNOTATION: str(drain_seconds)}
    container["args"] = [ray_script(setup, start, head, resources, drain_seconds)]
    # A failed Ray container's last log lines become its termination message, which the operator quotes.
    container.setdefault("terminationMessagePolicy", "FallbackToLogsOnError")
    env = container.setdefault("env", [])
    user_names = {e.get("name") for e in env}
    env.extend(e for e in _env(cluster_name, namespace, pod_type) if e["name"] not in user_names)
    for each in spec["containers"]:
        _quantities_as_strings(each)
    _with_shm(spec, container)
    return pod


def _declared_ports(node_config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The container ports a head template declares, as Service ports."""
    ports = []
    for container in (node_config.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            number = port.get("containerPort")
            if number:
                ports.append({"name": port.get("name") or f"port-{number}", "port": number})
    return ports


def head_service_ports(provider_config: Mapping[str, Any], head_node_config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """GCS, dashboard, client and metrics; then the ports the head template declares;
    `headServicePorts` merged over all of them by name."""
    gcs = {"name": "gcs", "port": ray_start.gcs_port(provider_config["head_start_ray_commands"])}
    merged: dict[str, dict[str, Any]] = {}
    numbers: set[int] = set()
    for port in [gcs, *HEAD_SERVICE_DEFAULT_PORTS, *_declared_ports(head_node_config)]:
        if port["name"] not in merged and port["port"] not in numbers:
            merged[port["name"]] = dict(port)
            numbers.add(port["port"])
    for port in provider_config.get("head_service_ports") or []:
        merged[port["name"]] = dict(port)
    result = []
    for port in merged.values():
        port.setdefault("targetPort", port["port"])
        result.append({"protocol": "TCP", **port})
    return result


def _head_object_metadata(provider_config: Mapping[str, Any], cluster_name: str) -> dict[str, Any]:
    """The metadata of the objects `<cluster>-ray-head` beside the head pod (its Service, its budget): labelled by
    cluster, owned by the RayCluster."""
    return {
        "name": head_service_name(cluster_name),
        "namespace": provider_config["namespace"],
        "labels": {**cluster_labels(cluster_name, "ray-head"), TAG_RAY_CLUSTER_NAME: cluster_name},
        "ownerReferences": owner_references(provider_config),
    }


def build_head_disruption_budget(provider_config: Mapping[str, Any], cluster_name: str) -> dict[str, Any]:
    """The PodDisruptionBudget `<cluster>-ray-head`: an eviction of a Ready head pod (`kubectl drain` of its node, a
    cluster autoscaler's scale-down) is refused, so that taking the whole Ray cluster down is a decision (deleting
    the pod, or `headPodDisruptionBudget: false`); a head that is not Ready may still be evicted."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _head_object_metadata(provider_config, cluster_name),
        "spec": {
            "minAvailable": 1,
            "selector": {"matchLabels": head_selector(cluster_name)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def build_head_service(
    provider_config: Mapping[str, Any], cluster_name: str, head_node_config: Mapping[str, Any]
) -> dict[str, Any]:
    """The ClusterIP Service `<cluster>-ray-head` in front of the head pod."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _head_object_metadata(provider_config, cluster_name),
        "spec": {
            "type": "ClusterIP",
            "selector": head_selector(cluster_name),
            "ports": head_service_ports(provider_config, head_node_config),
        },
    }
