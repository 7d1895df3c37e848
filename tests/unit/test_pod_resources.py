"""Kubernetes quantities and what a podType's pods offer to Ray."""

from decimal import Decimal

import pytest

from autoscaler_bridge.pod_resources import (
    container_ray_resources,
    parse_quantity,
    pod_type_resources,
    ray_container_index,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("500m", Decimal("0.5")),
        ("1.5", Decimal("1.5")),
        ("2Gi", Decimal(2 * 1024**3)),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("100Ki", Decimal(102400)),
        ("1k", Decimal(1000)),
        (3, Decimal(3)),
        (0.25, Decimal("0.25")),
    ],
)
def test_quantities_parse_as_kubernetes_does(text, expected):
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("text", ["1.5.5", "abc", "2gi", "", "1Qi", None, True, [1]])
def test_unparsable_quantities_are_refused(text):
    with pytest.raises(ValueError, match="is not a Kubernetes quantity"):
        parse_quantity(text)


def test_negative_quantities_are_refused():
    with pytest.raises(ValueError, match="is negative"):
        parse_quantity("-1")


@pytest.mark.parametrize(
    "cpu, ray_cpus",
    [("500m", 1), ("1", 1), ("1.5", 2), ("1001m", 2), ("2", 2), (4, 4), ("100m", 1), ("0", 0)],
)
def test_fractional_cpus_round_up_to_whole_ray_cpus(cpu, ray_cpus):
    container = {"name": "ray-node", "resources": {"limits": {"cpu": cpu}}}
    assert container_ray_resources(container) == {"CPU": ray_cpus}


def test_memory_is_whole_bytes_rounded_up():
    container = {"name": "c", "resources": {"limits": {"memory": "1.5Ki"}, "requests": {"cpu": 1}}}
    assert container_ray_resources(container) == {"memory": 1536, "CPU": 1}
    container = {"name": "c", "resources": {"limits": {"memory": "1001m"}}}
    assert container_ray_resources(container) == {"memory": 2}


def test_limits_win_over_requests_and_gpu_comes_from_nvidia_or_amd():
    container = {
        "name": "c",
        "resources": {
            "requests": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": 1},
            "limits": {"cpu": "3", "nvidia.com/gpu": 2},
        },
    }
    assert container_ray_resources(container) == {"CPU": 3, "GPU": 2, "memory": 1024**3}
    amd = {"name": "c", "resources": {"limits": {"cpu": 1, "amd.com/gpu": "1"}}}
    assert container_ray_resources(amd) == {"CPU": 1, "GPU": 1}


def test_zero_gpus_are_not_advertised():
    container = {"name": "c", "resources": {"limits": {"cpu": 1, "nvidia.com/gpu": 0}}}
    assert container_ray_resources(container) == {"CPU": 1}


def test_ray_container_is_ray_node_else_first():
    two = {"spec": {"containers": [{"name": "sidecar"}, {"name": "ray-node"}]}}
    assert ray_container_index(two) == 1
    other = {"spec": {"containers": [{"name": "main"}, {"name": "sidecar"}]}}
    assert ray_container_index(other) == 0


def test_ray_resources_override_and_extend_the_containers():
    pod_type = {
        "name": "t",
        "rayResources": {"CPU": 8, "custom": 2},
        "podConfig": {
            "spec": {
                "containers": [
                    {"name": "log-shipper", "resources": {"limits": {"cpu": "100"}}},
                    {"name": "ray-node", "resources": {"limits": {"cpu": "2", "memory": "1Gi"}}},
                ]
            }
        },
    }
    assert pod_type_resources(pod_type) == {"CPU": 8, "memory": 1024**3, "custom": 2}
