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

RAY_CONTAINER_NAME = "ray-node"
GCS_PORT = 6379

# Longest cluster name whose head Service name "<name>-ray-head" is still a
# DNS-1035 label (63 characters).
HEAD_SERVICE_SUFFIX = "-ray-head"
MAX_CLUSTER_NAME_LENGTH = 63 - len(HEAD_SERVICE_SUFFIX)

_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def is_dns1035_label(value: str) -> bool:
    return bool(_DNS1035_LABEL.match(value)) and len(value) <= 63


def is_label_value(value: str) -> bool:
    return bool(_LABEL_VALUE.match(value)) and len(value) <= 63


def head_service_name(cluster_name: str) -> str:
    return cluster_name + HEAD_SERVICE_SUFFIX


def head_service_host(cluster_name: str, namespace: str) -> str:
    """The DNS name workers reach the head by."""
    return f"{head_service_name(cluster_name)}.{namespace}.svc.cluster.local"
