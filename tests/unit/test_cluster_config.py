"""A RayCluster becomes exactly the Ray autoscaler config that runs it."""

import copy

import pytest
from ray.autoscaler._private.util import validate_config

from autoscaler_bridge.cluster_config import autoscaler_config
from autoscaler_bridge.names import DEFAULT_HEAD_START_RAY_COMMANDS, DEFAULT_WORKER_START_RAY_COMMANDS
from autoscaler_bridge.validation import InvalidRayCluster
from tests.harness.files import LEGACY_EXAMPLE, load_yaml

# Keys StandardAutoscaler.reset() reads without defaults (it never runs prepare_config).
KEYS_THE_AUTOSCALER_READS = {
    "file_mounts",
    "cluster_synced_files",
    "worker_setup_commands",
    "worker_start_ray_commands",
    "available_node_types",
    "head_node_type",
    "max_workers",
    "provider",
    "cluster_name",
    "auth",
}


def test_every_example_passes_rays_own_validation(example_raycluster):
    config = autoscaler_config(example_raycluster)
    validate_config(config)
    assert KEYS_THE_AUTOSCALER_READS <= config.keys()


def full_cluster():
    return {
        "apiVersion": "cluster.ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "demo", "namespace": "team-a", "uid": "1234-abcd"},
        "spec": {
            "maxWorkers": 7,
            "upscalingSpeed": 2.5,
            "idleTimeoutMinutes": 0.5,
            "headPodType": "head",
            "headStartRayCommands": ["ray start --head --port=6380 --no-monitor"],
            "workerStartRayCommands": ["ray start --address=$RAY_HEAD_IP:6380"],
            "headServicePorts": [{"name": "serve", "port": 8000, "targetPort": 8000}],
            "podTypes": [
                {
                    "name": "head",
                    "minWorkers": 0,
                    "maxWorkers": 0,
                    "podConfig": {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {"labels": {"team": "a"}},
                        "spec": {
                            "containers": [
                                {
                                    "name": "ray-node",
                                    "image": "rayproject/ray:2.60.0",
                                    "resources": {"limits": {"cpu": "1500m", "memory": "2Gi"}},
                                }
                            ]
                        },
                    },
                },
                {
                    "name": "gpu",
                    "minWorkers": 1,
                    "maxWorkers": 4,
                    "drainTimeoutSeconds": 600,
                    "rayResources": {"accel": 2},
                    "setupCommands": ["pip install torch"],
                    "podConfig": {
                        "spec": {
                            "nodeSelector": {"gpu": "yes"},
                            "containers": [
                                {
                                    "name": "ray-node",
                                    "resources": {"requests": {"cpu": 4}, "limits": {"nvidia.com/gpu": 1}},
                                }
                            ],
                        },
                    },
                },
            ],
        },
    }


def test_every_field_maps():
    rc = full_cluster()
    config = autoscaler_config(rc)
    validate_config(config)
    assert config["cluster_name"] == "demo"
    assert config["max_workers"] == 7
    assert config["upscaling_speed"] == 2.5
    assert config["idle_timeout_minutes"] == 0.5
    assert config["head_node_type"] == "head"
    token_env = [
        {"name": "RAY_AUTH_MODE", "value": "token"},
        {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "demo-ray-auth", "key": "token"}}},
    ]
    for pod_type in rc["spec"]["podTypes"]:  # the template, with Ray's authentication (rayAuthentication: token)
        pod_type["podConfig"]["spec"]["containers"][0]["env"] = token_env
    assert config["available_node_types"] == {
        "head": {
            "node_config": rc["spec"]["podTypes"][0]["podConfig"],
            "resources": {"CPU": 2, "memory": 2 * 1024**3},
            "min_workers": 0,
            "max_workers": 0,
        },
        "gpu": {
            "node_config": rc["spec"]["podTypes"][1]["podConfig"],
            "resources": {"CPU": 4, "GPU": 1, "accel": 2},
            "min_workers": 1,
            "max_workers": 4,
        },
    }
    assert config["provider"] == {
        "type": "external",
        "module": "autoscaler_bridge.node_provider.KubernetesNodeProvider",
        "namespace": "team-a",
        "use_internal_ips": True,
        "disable_node_updaters": True,
        "disable_launch_config_check": False,
        "owner": {"apiVersion": "cluster.ray.io/v1", "kind": "RayCluster", "name": "demo", "uid": "1234-abcd"},
        "head_start_ray_commands": ["ray start --head --port=6380 --no-monitor"],
        "worker_start_ray_commands": ["ray start --address=$RAY_HEAD_IP:6380"],
        "setup_commands": {"gpu": ["pip install torch"]},
        "head_service_ports": [{"name": "serve", "port": 8000, "targetPort": 8000}],
        "ray_auth_mode": "token",
        "max_pending_pods": 10,
        "pending_timeout_seconds": 600.0,
        "drain_seconds": {"head": 120, "gpu": 600},  # the default for a podType that sets none
        "head_disruption_budget": True,  # unless headPodDisruptionBudget is false
    }
    # Ray runs no commands itself: the pods do (see the provider section).
    for key in (
        "setup_commands",
        "head_setup_commands",
        "worker_setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
        "initialization_commands",
    ):
        assert config[key] == []
    assert config["file_mounts"] == {} and config["cluster_synced_files"] == [] and config["auth"] == {}


def test_defaults_of_the_legacy_operator():
    rc = full_cluster()
    for key in (
        "maxWorkers",
        "upscalingSpeed",
        "idleTimeoutMinutes",
        "headStartRayCommands",
        "workerStartRayCommands",
        "headServicePorts",
    ):
        del rc["spec"][key]
    del rc["metadata"]["namespace"], rc["metadata"]["uid"]
    del rc["spec"]["podTypes"][1]["minWorkers"]
    config = autoscaler_config(rc)
    validate_config(config)
    assert config["max_workers"] == 4  # the podTypes' maxWorkers together
    assert config["upscaling_speed"] == 1.0
    assert config["idle_timeout_minutes"] == 5
    assert config["available_node_types"]["gpu"]["min_workers"] == 0
    provider = config["provider"]
    assert provider["namespace"] == "default"
    assert provider["owner"] == {"apiVersion": "cluster.ray.io/v1", "kind": "RayCluster", "name": "demo"}
    assert provider["head_start_ray_commands"] == DEFAULT_HEAD_START_RAY_COMMANDS
    assert provider["worker_start_ray_commands"] == DEFAULT_WORKER_START_RAY_COMMANDS
    assert provider["head_service_ports"] == []


def test_worker_setup_commands_is_the_same_as_setup_commands():
    rc = full_cluster()
    rc["spec"]["podTypes"][1]["workerSetupCommands"] = rc["spec"]["podTypes"][1].pop("setupCommands")
    assert autoscaler_config(rc)["provider"]["setup_commands"] == {"gpu": ["pip install torch"]}


def test_legacy_manifest_converts_like_the_legacy_operator():
    config = autoscaler_config(load_yaml(LEGACY_EXAMPLE))
    assert config["cluster_name"] == "example-cluster"
    assert config["head_node_type"] == "head-node"
    assert config["available_node_types"]["worker-node"]["resources"] == {
        "CPU": 1,
        "memory": 512 * 1024**2,
        "example-resource-a": 1,
        "example-resource-b": 1,
    }
    assert config["available_node_types"]["worker-node"]["min_workers"] == 2


def test_output_does_not_share_state_with_the_input():
    rc = full_cluster()
    config = autoscaler_config(rc)
    config["available_node_types"]["head"]["node_config"]["metadata"]["labels"]["x"] = "y"
    config["provider"]["head_service_ports"][0]["port"] = 1
    assert rc == full_cluster()


def test_invalid_cluster_raises_with_every_problem():
    rc = full_cluster()
    rc["spec"]["headPodType"] = "missing"
    rc["spec"]["podTypes"][1]["maxWorkers"] = 0
    with pytest.raises(InvalidRayCluster) as raised:
        autoscaler_config(rc)
    assert [str(p) for p in raised.value.problems] == [
        "spec.podTypes[1].maxWorkers: 0 is less than minWorkers 1",
        "spec.headPodType: 'missing' is not one of the podTypes (head, gpu)",
    ]


def test_conversion_is_deterministic(example_raycluster):
    assert autoscaler_config(example_raycluster) == autoscaler_config(copy.deepcopy(example_raycluster))
