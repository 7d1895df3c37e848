"""The operator's head Service and head pod, and its deletion of a cluster's pods, against the project's API server."""

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException
from ray.autoscaler.tags import TAG_RAY_NODE_KIND

from autoscaler_bridge.cluster_config import head_tags
from autoscaler_bridge.kube_client import KubeCalls
from autoscaler_bridge.watch_cache import WatchCache
from autoscaler_bridge.cluster_pods import CachedPods
from ray_operator.head import MAX_FIELDS, HeadPodRefused, create_head_pod, create_head_service, refusal
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


def api_error(status: int, reason: str, body: str | None = None) -> ApiException:
    error = ApiException(status, reason)
    error.body = body
    return error


@pytest.mark.parametrize(
    "error, why",
    [
        (api_error(422, "Unprocessable Entity", '{"message": "Pod \\"p\\" is invalid: image: Required value"}'),
         'Pod "p" is invalid: image: Required value'),
        (api_error(400, "Bad Request"), "Bad Request"),
        (api_error(422, "Unprocessable Entity", "not JSON"), "Unprocessable Entity"),
        (api_error(500, "Internal Server Error"), None),
        (api_error(409, "Conflict"), None),
        (ConnectionError("refused"), None),
        (ValueError("not a pod"), "not a pod"),
    ],
)  # fmt: skip
def test_a_refusal_says_why_a_body_is_invalid_and_nothing_else_is_one(error, why):
    assert refusal(error) == why


@pytest.mark.parametrize(
    "container, why",
    [
        ({"image": 0}, "spec.containers[0].image: Input should be a valid string"),  # the client's check
        ({"name": "Ray_Head"}, "spec.containers[0].name"),  # the API server's
    ],
)
def test_a_head_pod_refused_as_invalid_says_where(cluster, kube, container, why):
    _, config = cluster
    head_type = config["available_node_types"][config["head_node_type"]]
    head_type["node_config"]["spec"]["containers"][0].update(container)
    calls = KubeCalls(kube)
    with pytest.raises(HeadPodRefused) as refused:
        create_head_pod(
            calls, config, WatchCache(calls.core.list_namespaced_pod, "ray", label_selector="ray-node-type")
        )
    assert str(refused.value).startswith(f"the head pod of podType {config['head_node_type']} is refused: ")
    assert why in str(refused.value)
    assert pods(kube) == []


def test_a_refusal_names_at_most_a_few_fields():
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    containers = [{"name": f"c{i}", "image": i} for i in range(MAX_FIELDS + 2)]
    api = kubernetes.client.CoreV1Api(
        kubernetes.client.ApiClient(kubernetes.client.Configuration(host="http://0.0.0.0:9"))
    )
    with pytest.raises(ValueError) as refused:  # the client's check, before any request
        api.create_namespaced_pod("ray", {**body, "spec": {"containers": containers}}, _request_timeout=1)
    why = refusal(refused.value)
    assert why is not None and why.count("Input should be a valid string") == MAX_FIELDS and why.endswith("and 2 more")
