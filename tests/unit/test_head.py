"""The operator's head Service and head pod, and its deletion of a cluster's pods, against the project's API server."""

import kubernetes
from ray.autoscaler.tags import TAG_RAY_NODE_KIND

from autoscaler_bridge.cluster_config import head_tags
from autoscaler_bridge.kube_client import KubeCalls
from autoscaler_bridge.watch_cache import WatchCache
from autoscaler_bridge.cluster_pods import CachedPods
from ray_operator.head import create_head_pod, create_head_service
from tests.unit.test_node_provider import cluster, pods  # noqa: F401 - fixtures


def test_head_service_and_pod_are_made_as_the_cache_then_shows_them(cluster, kube):
    _, config = cluster
    calls = KubeCalls(kube)
    services = WatchCache(calls.core.list_namespaced_service, "ray", label_selector="ray-cluster-name")
    pod_cache = WatchCache(calls.core.list_namespaced_pod, "ray", label_selector="ray-cluster-name")
    create_head_service(calls, config, services)
    create_head_service(calls, config, services)  # made meanwhile by another pass: no error
    assert services.get("ray", "demo-ray-head")["spec"]["selector"] == {
        "ray-cluster-name": "demo",
        "ray-node-type": "head",
    }
    head = create_head_pod(calls, config, pod_cache)
    assert pod_cache.get("ray", head["metadata"]["name"]) == head
    [pod] = pods(kube)
    assert pod.metadata.labels[TAG_RAY_NODE_KIND] == "head"
    assert pod.metadata.labels["ray-launch-config"] == head_tags(config)["ray-launch-config"]
    assert "--head" in pod.spec.containers[0].args[0] and "--no-monitor" in pod.spec.containers[0].args[0]
    assert CachedPods(calls, pod_cache, "ray", "demo").delete([pod.metadata.name, "gone-already"]) == ["gone-already"]
    assert pods(kube) == [] and pod_cache.get("ray", pod.metadata.name) is None
    assert kubernetes.client.CoreV1Api(kube).read_namespaced_service("demo-ray-head", "ray")
