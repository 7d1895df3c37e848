"""The Kubernetes node provider against the project's API server on loopback: what it makes and deletes, and what
it tells the autoscaler of the pods, all through the pods an operator serves it (autoscaler_bridge.pod_channel)."""

import copy
import threading
import time

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException
from ray.autoscaler.tags import TAG_RAY_NODE_KIND, TAG_RAY_NODE_STATUS, TAG_RAY_USER_NODE_TYPE

from autoscaler_bridge import fence, pod_channel, start_gate
from autoscaler_bridge.cluster_config import autoscaler_config, head_tags
from autoscaler_bridge.cluster_pods import CachedPods
from autoscaler_bridge.kube_client import KubeCalls
from autoscaler_bridge.names import JOINED_TAG
from autoscaler_bridge.node_provider import KubernetesNodeProvider
from autoscaler_bridge.ray_pod import build_ray_pod
from kube_apiserver.server import ApiServer
from ray_operator.helm_values import raycluster_from_values
from tests.harness.api import apply_crd, create_raycluster
from tests.harness.files import ROOT, load_yaml
from tests.harness.pods import served_pods
from tests.harness.waiting import wait_for


WORKERS = {TAG_RAY_NODE_KIND: "worker"}


def create_head(kube, config, cache=None):
    """The cluster's head pod (as the operator makes it), its name; once `cache` (the pods served) holds it."""
    head_type = config["available_node_types"]["rayHeadType"]
    head = build_ray_pod(
        config["provider"], "demo", head_type["node_config"], head_tags(config), head_type["resources"]
    )
    name = kubernetes.client.CoreV1Api(kube).create_namespaced_pod("ray", head).metadata.name
    if cache is not None:
        wait_for(lambda: cache.get("ray", name), message="the head pod, as served")
    return name


@pytest.fixture
def cluster(kube):
    """A RayCluster stored in the API, and its autoscaler config (with the RayCluster's uid)."""
    apply_crd(kube)
    values = load_yaml(ROOT / "values/cpu-only.yaml")
    stored = create_raycluster(kube, raycluster_from_values(values, "demo", "ray"))
    return stored, autoscaler_config(stored)


@pytest.fixture
def provider(cluster, kube, pod_service):
    """The cluster's node provider, its head pod made (workers are launched only beside a head)."""
    _, config = cluster
    create_head(kube, config, pod_service.cache)
    return KubernetesNodeProvider(pod_service.provider_config(config["provider"]), config["cluster_name"])


def listed(provider, question):
    """`question(provider)` as a round asks it: after the round's listing (node-level questions are answered from
    the last listing)."""
    provider.non_terminated_nodes({})
    return question(provider)


def worker_tags(config, **extra):
    return {
        TAG_RAY_NODE_KIND: "worker",
        TAG_RAY_USER_NODE_TYPE: "rayWorkerType",
        TAG_RAY_NODE_STATUS: "uninitialized",
        "ray-launch-config": "a" * 40,
        "ray-node-name": f"ray-{config['cluster_name']}-worker",
        **extra,
    }


def launch(provider, config, count):
    node_type = config["available_node_types"]["rayWorkerType"]
    return provider.create_node_with_resources_and_labels(
        node_type["node_config"], worker_tags(config), count, node_type["resources"], {}
    )


def pods(kube, namespace="ray", selector="ray-cluster-name=demo"):
    return kubernetes.client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector=selector).items


def worker_pods(kube):
    """The cluster's worker pods in the API."""
    return pods(kube, selector="ray-cluster-name=demo,ray-node-type=worker")


def set_phase(kube, name, phase, ip=None, namespace="ray"):
    status = {"phase": phase}
    if ip:
        status["podIP"] = ip
    kubernetes.client.CoreV1Api(kube).patch_namespaced_pod_status(name, namespace, {"status": status})


def test_created_pods_carry_tags_labels_and_owner(provider, cluster, kube):
    stored, config = cluster
    created = launch(provider, config, 2)
    assert len(created) == 2
    listed = worker_pods(kube)
    assert sorted(p.metadata.name for p in listed) == sorted(created)
    for pod in listed:
        assert pod.metadata.name.startswith("demo-rayworkertype-")
        labels = pod.metadata.labels
        assert labels["ray-cluster-name"] == "demo" and labels[TAG_RAY_NODE_KIND] == "worker"
        assert labels[TAG_RAY_USER_NODE_TYPE] == "rayWorkerType" and labels["ray-launch-config"] == "a" * 40
        assert labels["app.kubernetes.io/component"] == "ray-worker"
        [owner] = pod.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid, owner.controller) == (
            "RayCluster",
            "demo",
            stored["metadata"]["uid"],
            True,
        )
        assert "--num-cpus=1" in pod.spec.containers[0].args[0]


def test_listing_tags_state_and_ips_follow_the_pods(provider, cluster, kube):
    _, config = cluster
    first, second = launch(provider, config, 2)
    assert sorted(provider.non_terminated_nodes(WORKERS)) == sorted([first, second])
    assert provider.non_terminated_nodes({TAG_RAY_USER_NODE_TYPE: "other"}) == []
    assert provider.node_tags(first)[TAG_RAY_NODE_STATUS] == "uninitialized"
    assert not provider.is_running(first) and not provider.is_terminated(first)
    assert provider.internal_ip(first) is None

    set_phase(kube, first, "Running", "10.1.0.7")
    set_phase(kube, second, "Failed")
    wait_for(
        lambda: provider.non_terminated_nodes({TAG_RAY_NODE_STATUS: "update-failed"}) and provider.is_running(first),
        message="the watch's word on both pods",
    )
    assert provider.is_running(first) and provider.internal_ip(first) == "10.1.0.7"
    assert provider.external_ip(first) == "10.1.0.7"
    assert provider.node_tags(first)[TAG_RAY_NODE_STATUS] == "setting-up"  # running, its Ray node not joined yet
    provider.set_node_tags(first, {JOINED_TAG: "true"})  # its autoscaler saw it join (DrainingAutoscaler)
    assert provider.node_tags(first)[TAG_RAY_NODE_STATUS] == "up-to-date"
    # A failed pod is reported as such (the autoscaler then replaces it), never as running.
    assert not provider.is_running(second)
    assert provider.node_tags(second)[TAG_RAY_NODE_STATUS] == "update-failed"
    assert provider.non_terminated_nodes({TAG_RAY_NODE_STATUS: "update-failed"}) == [second]

    provider.set_node_tags(first, {"ray-runtime-config": "b" * 40})
    assert provider.node_tags(first)["ray-runtime-config"] == "b" * 40
    assert pods(kube, selector=f"ray-runtime-config={'b' * 40}")[0].metadata.name == first


def test_terminate_deletes_pods_and_tolerates_pods_deleted_by_hand(provider, cluster, kube):
    _, config = cluster
    names = list(launch(provider, config, 3))
    kubernetes.client.CoreV1Api(kube).delete_namespaced_pod(names[0], "ray")
    provider.terminate_nodes(names)
    assert provider.non_terminated_nodes(WORKERS) == []  # seen at once, before any event
    assert worker_pods(kube) == []
    provider.terminate_node(names[1])  # already gone: no error
    provider.set_node_tags(names[1], {"x": "y"})  # likewise
    assert provider.non_terminated_nodes(WORKERS) == []


def test_no_pod_is_created_or_deleted_past_the_operators_lease_deadline(cluster, kube, tmp_path, pod_service):
    """An operator's autoscaler acts only while the deadline in its fence file lies ahead (autoscaler_bridge.fence):
    a paused or cut-off operator's autoscalers stop acting before another operator may take the cluster over."""
    _, config = cluster
    deadline = tmp_path / "lease-valid-until"
    fenced_provider = KubernetesNodeProvider(
        {**pod_service.provider_config(config["provider"]), "fence_file": str(deadline)}, config["cluster_name"]
    )
    fence.write_deadline(deadline, time.monotonic() + 60)
    create_head(kube, config, pod_service.cache)
    names = list(launch(fenced_provider, config, 2))
    fence.write_deadline(deadline, time.monotonic() - 1)
    with pytest.raises(fence.Fenced):
        launch(fenced_provider, config, 1)
    with pytest.raises(fence.Fenced):
        fenced_provider.terminate_nodes(names)
    assert sorted(p.metadata.name for p in worker_pods(kube)) == sorted(names)
    fence.write_deadline(deadline, time.monotonic() + 60)  # renewed: on with the work
    fenced_provider.terminate_nodes(names)
    assert worker_pods(kube) == []


def test_a_request_that_waited_as_the_lease_lapsed_is_refused_by_the_operator_too(cluster, kube, tmp_path, pod_service):
    """The autoscaler checks the deadline before it asks; the operator checks it again before it acts on the request
    (its answer may have waited), so no pod changes once the deadline has passed."""
    _, config = cluster
    head = create_head(kube, config, pod_service.cache)
    deadline = tmp_path / "lease-valid-until"
    fence.write_deadline(deadline, time.monotonic() - 1)
    served = CachedPods(KubeCalls(kube), pod_service.cache, "ray", "demo", fence_file=deadline)
    worker_type = config["available_node_types"]["rayWorkerType"]
    body = build_ray_pod(config["provider"], "demo", worker_type["node_config"], worker_tags(config), {})
    for refused in (lambda: served.create(body), lambda: served.label(head, {"x": "y"}), lambda: served.delete([head])):
        with pytest.raises(fence.Fenced):
            refused()
    assert [p.metadata.name for p in pods(kube)] == [head] and "x" not in pods(kube)[0].metadata.labels


def gated_provider(cluster, kube, tmp_path, pod_service, starting):
    """A node provider that claims places in a start gate (the operator's count published: `starting` Ray pods of at
    most 3), its cluster's head made; with the gate's file and the cluster's config."""
    _, config = cluster
    gate = tmp_path / "ray-pods-starting"
    gated = KubernetesNodeProvider(
        {**pod_service.provider_config(config["provider"]), "start_gate_file": str(gate)}, config["cluster_name"]
    )
    create_head(kube, config, pod_service.cache)
    start_gate.publish(gate, bound=3, starting=starting, counted_at=time.monotonic())
    return gated, gate, config


def test_launches_take_only_the_places_the_operators_bound_leaves(cluster, kube, tmp_path, pod_service):
    """The operator counts 1 Ray pod starting on the busiest node, of at most 3: of 4 pods, 2 are launched now, the
    rest in a later round, once the count has room (autoscaler_bridge.start_gate)."""
    gated, gate, config = gated_provider(cluster, kube, tmp_path, pod_service, starting=1)
    assert len(launch(gated, config, 4)) == 2
    assert launch(gated, config, 2) == {}  # the two claimed count until a count holds them
    start_gate.publish(gate, bound=3, starting=2, counted_at=time.monotonic() + start_gate.CLAIM_LAG_SECONDS + 1)
    assert len(launch(gated, config, 2)) == 1
    assert len(worker_pods(kube)) == 3


def test_a_launch_the_api_refuses_frees_the_places_it_claimed(cluster, kube, tmp_path, pod_service):
    """Pods that cannot be made (here the client refuses them: their image is no string) hold no place to start:
    the claim is withdrawn, and the next launch has every place the count leaves."""
    from ray.autoscaler.node_launch_exception import NodeLaunchException

    gated, gate, config = gated_provider(cluster, kube, tmp_path, pod_service, starting=0)
    node_type = config["available_node_types"]["rayWorkerType"]
    refused = copy.deepcopy(node_type["node_config"])
    refused["spec"]["containers"][0]["image"] = 0
    with pytest.raises(NodeLaunchException):
        gated.create_node_with_resources_and_labels(refused, worker_tags(config), 2, node_type["resources"], {})
    assert start_gate.claimed(gate) == 0
    assert len(launch(gated, config, 3)) == 3


def test_the_head_is_never_terminated(provider, cluster, kube):
    [name] = provider.non_terminated_nodes({TAG_RAY_NODE_KIND: "head"})
    provider.terminate_node(name)
    assert [p.metadata.name for p in pods(kube)] == [name]


def test_no_worker_is_launched_while_the_cluster_has_no_head(provider, cluster, kube):
    """Ray's autoscaler counts the head among its podType's nodes: with the head gone (the operator restarts the
    cluster), it would launch one as a worker."""
    _, config = cluster
    [head] = provider.non_terminated_nodes({TAG_RAY_NODE_KIND: "head"})
    kubernetes.client.CoreV1Api(kube).delete_namespaced_pod(head, "ray")
    wait_for(lambda: listed(provider, lambda p: p.is_terminated(head)), message="the head gone in the provider's view")
    assert launch(provider, config, 1) == {}
    assert worker_pods(kube) == []


def test_a_round_makes_no_request_and_asks_the_operator_per_listing_however_many_pods(
    provider, cluster, kube, api_server, monkeypatch
):
    """No API request; and of the operator, one question per listing: what a round asks about each node is answered
    from the round's listing."""
    _, config = cluster
    asked = []
    answer = pod_channel.answer

    def counted(pods, operation, *rest):
        asked.append(operation)
        return answer(pods, operation, *rest)

    monkeypatch.setattr(pod_channel, "answer", counted)

    def one_round():
        before, asked_before = len(api_server.request_log), len(asked)
        for node in provider.non_terminated_nodes({}):
            (
                provider.node_tags(node),
                provider.internal_ip(node),
                provider.is_running(node),
                provider.is_terminated(node),
            )
        provider.non_terminated_nodes({TAG_RAY_NODE_KIND: "worker"})
        return len(api_server.request_log) - before, asked[asked_before:]

    launch(provider, config, 2)
    assert len(provider.non_terminated_nodes(WORKERS)) == 2  # launches are seen at once
    with_two = one_round()
    launch(provider, config, 20)
    with_twenty_two = one_round()
    assert with_two == with_twenty_two == (0, ["items", "items"])


def test_pods_unknown_are_never_no_pods(cluster, tmp_path, monkeypatch):
    """While the operator's watch cannot list (the API is down), the provider raises instead of answering "no pods"
    (Ray issue 58933: the autoscaler then terminated every node)."""
    from autoscaler_bridge.watch_cache import NotSynced

    _, config = cluster
    server = ApiServer().start()
    client = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=server.url))
    monkeypatch.setattr(pod_channel, "SYNC_SECONDS", 1.0)
    with served_pods(client, tmp_path / "pods.sock") as cache:
        server.stop()
        wait_for(lambda: not cache.wait_synced(0), message="the watch failed")
        provider = KubernetesNodeProvider({**config["provider"], "pod_service": str(tmp_path / "pods.sock")}, "demo")
        with pytest.raises(NotSynced):
            provider.non_terminated_nodes({})


def test_transient_api_outage_is_retried(cluster, kube, tmp_path, monkeypatch):
    """The API server goes away mid-call and comes back: the provider's call succeeds."""
    data = tmp_path / "etcd.json"
    server = ApiServer(data_file=data).start()
    port = int(server.url.rsplit(":", 1)[1])
    client = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=server.url))
    core = kubernetes.client.CoreV1Api(client)
    core.create_namespace({"metadata": {"name": "ray"}})
    _, config = cluster
    create_head(client, config)
    restarted = []

    def restart_later():
        threading.Event().wait(1.0)
        restarted.append(ApiServer(port=port, data_file=data).start())

    thread = threading.Thread(target=restart_later)
    with served_pods(client, tmp_path / "pods.sock"):
        provider = KubernetesNodeProvider({**config["provider"], "pod_service": str(tmp_path / "pods.sock")}, "demo")
        server.stop()
        thread.start()
        try:
            created = launch(provider, config, 1)
            thread.join()
            assert list(created) == [
                p.metadata.name for p in core.list_namespaced_pod("ray", label_selector="ray-node-type=worker").items
            ]
        finally:
            thread.join()
            for s in restarted:
                s.stop()


def test_a_failed_launch_is_reported_to_the_autoscaler(provider, cluster, kube):
    from ray.autoscaler.node_launch_exception import NodeLaunchException

    _, config = cluster
    kubernetes.client.CoreV1Api(kube).delete_namespaced_service_account("default", "ray")
    with pytest.raises(NodeLaunchException):
        launch(provider, config, 1)
    assert worker_pods(kube) == []


def test_errors_other_than_transient_ones_are_not_retried(kube):
    calls = KubeCalls(kube, retry_for=30)
    count = []

    def missing():
        count.append(1)
        raise ApiException(status=404)

    with pytest.raises(ApiException):
        calls(lambda **_: missing())
    assert len(count) == 1


def test_launches_stop_while_too_many_pods_are_pending(cluster, kube, pod_service):
    from ray.autoscaler.node_launch_exception import NodeLaunchException

    _, config = cluster
    config["provider"]["max_pending_pods"] = 3
    create_head(kube, config, pod_service.cache)
    provider = KubernetesNodeProvider(pod_service.provider_config(config["provider"]), config["cluster_name"])
    assert len(launch(provider, config, 5)) == 3  # a batch is cut to the bound
    with pytest.raises(NodeLaunchException) as raised:
        launch(provider, config, 1)
    assert "3 pods are Pending (the bound is 3)" in raised.value.description
    assert len(worker_pods(kube)) == 3
    started = worker_pods(kube)[0].metadata.name
    set_phase(kube, started, "Running", "10.0.0.9")
    wait_for(
        lambda: listed(provider, lambda p: p.is_running(started)), message="the started pod in the provider's view"
    )
    assert len(launch(provider, config, 1)) == 1  # one started, so one more may be Pending


def test_launches_stop_while_a_pod_is_pending_too_long():
    from datetime import datetime, timedelta, timezone

    from autoscaler_bridge.node_provider import pending_pods_block

    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    old = {"metadata": {"creationTimestamp": "2025-12-31T23:50:00Z"}, "status": {"phase": "Pending"}}
    fresh = {"metadata": {"creationTimestamp": "2025-12-31T23:59:50Z"}, "status": {"phase": "Pending"}}
    running = {"metadata": {"creationTimestamp": "2025-12-31T23:00:00Z"}, "status": {"phase": "Running"}}
    assert pending_pods_block([fresh, running], 10, 300, now) is None
    assert pending_pods_block([old, fresh], 10, 300, now) == (
        "1 pods have been Pending for more than 300s: no more are launched until they start"
    )
    assert pending_pods_block([old], None, None, now + timedelta(days=1)) is None


def test_a_deletion_may_give_a_pod_a_grace_period_of_its_own(provider, cluster, kube, pod_service):
    """What a cluster restart does to workers made to drain: they are deleted with time to stop Ray, not to drain.
    Bound to a node, the pods stay, being deleted, with the grace each was given."""
    _, config = cluster
    names = sorted(launch(provider, config, 2))
    core = kubernetes.client.CoreV1Api(kube)
    for name in names:
        binding = {"metadata": {"name": name}, "target": {"kind": "Node", "name": "n1"}}
        core.create_namespaced_pod_binding(name, "ray", binding, _preload_content=False)
    CachedPods(KubeCalls(kube), pod_service.cache, "ray", "demo").delete(names, {names[0]: 15})
    assert sorted(provider.terminating_workers()) == names and provider.non_terminated_nodes(WORKERS) == []
    graces = [core.read_namespaced_pod(name, "ray").metadata.deletion_grace_period_seconds for name in names]
    assert graces == [15, 135]  # the second: the pod's own (its drain of 120 s, and 15 s to stop Ray)
