"""Names and fixed values shared by the converter, the pod builder and the operator."""

from __future__ import annotations

import re

API_GROUP = "cluster.ray.io"
API_VERSION = "v1"
KIND = "RayCluster"
PLURAL = "rayclusters"

PROVIDER_CLASS = "autoscaler_bridge.node_provider.KubernetesNodeProvider"

DEFAULT_HEAD_START_RAY_COMMANDS = [
    "ray stop",
    "ulimit -n 65536; ray start --head --port=6379 --no-monitor --dashboard-host 0.0.0.0",
]
DEFAULT_WORKER_START_RAY_COMMANDS = [
    "ray stop",
    "ulimit -n 65536; ray start --address=$RAY_HEAD_IP:6379",
]
DEFAULT_UPSCALING_SPEED = 1.0
DEFAULT_IDLE_TIMEOUT_MINUTES = 5
# The operator's bound on Pending pods per podType (`ray-operator run --max-pending-pods`, `--pending-timeout`).
DEFAULT_MAX_PENDING_PODS = 10
DEFAULT_PENDING_TIMEOUT_SECONDS = 600.0
# How long a deleted worker drains (its running work finishes) before Ray is stopped: a podType's drainTimeoutSeconds.
DEFAULT_DRAIN_SECONDS = 120
# The drain time a worker pod was made with (what its container drains for, whatever its podType says later).
DRAIN_ANNOTATION = "ray.io/drain-timeout-seconds"
# The label a worker pod gets once its Ray node has joined the cluster (its autoscaler saw it): it is started.
JOINED_TAG = "ray-node-joined"

RAY_CONTAINER_NAME = "ray-node"
GCS_PORT = 6379

HEAD_SERVICE_SUFFIX = "-ray-head"
# Longest cluster name whose derived names still fit Kubernetes' 63 characters:
# the autoscaler's node-name tag "ray-<name>-worker", kept as a pod label value,
# is the longest of them (the head Service "<name>-ray-head" is shorter).
MAX_CLUSTER_NAME_LENGTH = 63 - len("ray--worker")

_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def is_dns1035_label(value: str) -> bool:
    return len(value) <= 63 and bool(_DNS1035_LABEL.match(value))


def is_dns1123_label(value: str) -> bool:
    """What Kubernetes requires of a container's or a volume's name."""
    return len(value) <= 63 and bool(_DNS1123_LABEL.match(value))


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL_VALUE.match(value))


def head_service_name(cluster_name: str) -> str:
    return cluster_name + HEAD_SERVICE_SUFFIX


def head_service_host(cluster_name: str, namespace: str) -> str:
    """The DNS name workers reach the head by."""
    return f"{head_service_name(cluster_name)}.{namespace}.svc.cluster.local"
