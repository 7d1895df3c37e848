"""The watch-fed cache against the project's API server on loopback: what it lists and hears, how it says that it
cannot know, and how it recovers."""

from __future__ import annotations

import kubernetes
import pytest

from autoscaler_bridge.kube_client import KubeCalls
from autoscaler_bridge.watch_cache import NotSynced, WatchCache
from kube_apiserver.server import ApiServer
from tests.harness.waiting import wait_for


def pod(name: str, cluster: str = "demo") -> dict:
    return {
        "metadata": {"name": name, "labels": {"ray-cluster-name": cluster}},
        "spec": {"containers": [{"name": "ray", "image": "rayproject/ray:2.60.0"}]},
    }


@pytest.fixture
def core(kube):
    api = kubernetes.client.CoreV1Api(kube)
    api.create_namespace({"metadata": {"name": "ray"}})
    return api


def names(cache: WatchCache) -> list[str]:
    return sorted(obj["metadata"]["name"] for obj in cache.items())


def test_it_lists_then_hears_creates_changes_and_deletes_of_its_selection(core):
    core.create_namespaced_pod("ray", pod("before"))
    core.create_namespaced_pod("ray", pod("other", cluster="else"))
    changed: list[str] = []
    cache = WatchCache(
        core.list_namespaced_pod,
        "ray",
        label_selector="ray-cluster-name=demo",
        on_change=lambda obj: changed.append(obj["metadata"]["name"]),
        name="pods",
    ).start()
    try:
        assert cache.wait_synced(10)
        assert names(cache) == ["before"] and changed == ["before"]
        core.create_namespaced_pod("ray", pod("after"))
        wait_for(lambda: names(cache) == ["after", "before"], message="the created pod in the cache")
        core.patch_namespaced_pod("after", "ray", {"metadata": {"annotations": {"seen": "yes"}}})
        wait_for(
            lambda: any((p["metadata"].get("annotations") or {}).get("seen") for p in cache.items()),
            message="the change in the cache",
        )
        core.delete_namespaced_pod("before", "ray", grace_period_seconds=0)
        wait_for(lambda: names(cache) == ["after"], message="the deleted pod gone from the cache")
        assert "other" not in changed and changed.count("after") == 2
    finally:
        cache.stop()


def test_it_cannot_know_before_its_first_list_nor_while_the_api_is_down_and_then_catches_up(tmp_path):
    data = tmp_path / "store.json"
    server = ApiServer(data_file=data).start()
    port = int(server.url.rsplit(":", 1)[1])
    client = kubernetes.config.new_client_from_config(str(server.write_kubeconfig(tmp_path / "kubeconfig")))
    core = KubeCalls(client).core
    core.create_namespace({"metadata": {"name": "ray"}})
    core.create_namespaced_pod("ray", pod("one"))
    cache = WatchCache(core.list_namespaced_pod, "ray", label_selector="ray-cluster-name=demo", watch_seconds=1)
    with pytest.raises(NotSynced):
        cache.items()  # not started: never "no pods"
    cache.start()
    try:
        assert cache.wait_synced(10) and names(cache) == ["one"]
        server.stop()
        wait_for(lambda: not cache.wait_synced(0), timeout=15, message="the cache to say it cannot know")
        with pytest.raises(NotSynced):
            cache.items()
        server = ApiServer(port=port, data_file=data).start()
        core.create_namespaced_pod("ray", pod("two"))
        wait_for(
            lambda: cache.wait_synced(0) and names(cache) == ["one", "two"],
            timeout=30,
            message="the cache listed again",
        )
    finally:
        cache.stop()
        server.stop()


def test_what_this_process_made_or_found_gone_is_seen_at_once_and_the_watch_has_the_last_word(core):
    cache = WatchCache(core.list_namespaced_pod, "ray", label_selector="ray-cluster-name=demo").start()
    try:
        assert cache.wait_synced(10)
        created = core.api_client.sanitize_for_serialization(core.create_namespaced_pod("ray", pod("mine")))
        cache.put(created)
        assert names(cache) == ["mine"]
        cache.discard("ray", "mine")
        assert names(cache) == []
        wait_for(lambda: names(cache) == ["mine"], message="the watch's own word on the pod")
    finally:
        cache.stop()


def test_a_response_older_than_what_the_watch_saw_does_not_turn_the_cache_back(core):
    """The create's response and the watch's events race (a kubelet may mark the pod Running before the creator
    puts its response into the cache): the later version stays."""
    cache = WatchCache(core.list_namespaced_pod, "ray", label_selector="ray-cluster-name=demo").start()
    try:
        assert cache.wait_synced(10)
        created = core.api_client.sanitize_for_serialization(core.create_namespaced_pod("ray", pod("raced")))
        core.patch_namespaced_pod_status("raced", "ray", {"status": {"phase": "Running", "podIP": "10.0.0.7"}})
        wait_for(
            lambda: (cache.get("ray", "raced") or {}).get("status", {}).get("podIP"), message="the watch's Running"
        )
        cache.put(created)
        assert cache.get("ray", "raced")["status"]["podIP"] == "10.0.0.7"
    finally:
        cache.stop()


def test_a_create_response_put_after_the_watch_saw_the_object_deleted_does_not_bring_it_back(core):
    """The create's response can come after the watch's ADDED and DELETED (a pod deleted at once by someone else):
    putting it then would hold a pod that is gone until the next LIST."""
    cache = WatchCache(core.list_namespaced_pod, "ray", label_selector="ray-cluster-name=demo").start()
    try:
        assert cache.wait_synced(10)
        created = core.api_client.sanitize_for_serialization(core.create_namespaced_pod("ray", pod("fleeting")))
        wait_for(lambda: names(cache) == ["fleeting"], message="the watch's pod")
        core.delete_namespaced_pod("fleeting", "ray", grace_period_seconds=0)
        wait_for(lambda: names(cache) == [], message="the watch's deletion")
        cache.put(created)
        assert names(cache) == []
        again = core.api_client.sanitize_for_serialization(core.create_namespaced_pod("ray", pod("fleeting")))
        cache.put(again)  # the same name made anew is another object (uid): put as ever
        assert names(cache) == ["fleeting"]
    finally:
        cache.stop()


def test_a_refreshed_object_replaces_the_one_held_and_one_gone_is_not_brought_back(core):
    """A pod this process deleted that stays, terminating, is seen so at once; one the watch already saw go stays
    gone (the deletion's response may come after the watch's DELETED event)."""
    cache = WatchCache(core.list_namespaced_pod, "ray", label_selector="ray-cluster-name=demo").start()
    try:
        assert cache.wait_synced(10)
        created = core.api_client.sanitize_for_serialization(core.create_namespaced_pod("ray", pod("held")))
        wait_for(lambda: names(cache) == ["held"], message="the watch's pod")
        terminating = {**created, "metadata": {**created["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}}
        cache.refresh(terminating)
        assert cache.get("ray", "held")["metadata"]["deletionTimestamp"] == "2026-01-01T00:00:00Z"
        core.delete_namespaced_pod("held", "ray")
        wait_for(lambda: names(cache) == [], message="the watch's deletion")
        cache.refresh(terminating)
        assert names(cache) == []
    finally:
        cache.stop()


def test_a_transform_keeps_only_what_the_reader_uses_of_listed_heard_and_put_objects(core):
    """The operator's pod cache keeps of a pod's spec only its node, and no managedFields
    (ray_operator.cluster_objects): 10,000 clusters' pods fit in a replica's memory."""
    from ray_operator.cluster_objects import metadata_and_status

    core.create_namespaced_pod("ray", pod("listed"))
    cache = WatchCache(
        core.list_namespaced_pod,
        "ray",
        label_selector="ray-cluster-name=demo",
        name="pods",
        transform=metadata_and_status,
    ).start()
    try:
        assert cache.wait_synced(10)
        core.create_namespaced_pod("ray", pod("heard"))
        wait_for(lambda: names(cache) == ["heard", "listed"], message="the created pod in the cache")
        placed = {**pod("put"), "spec": {**pod("put")["spec"], "nodeName": "node-1"}}
        made = kubernetes.client.ApiClient().sanitize_for_serialization(core.create_namespaced_pod("ray", placed))
        made["metadata"]["managedFields"] = [{"manager": "kubectl", "operation": "Update"}]  # as kube-apiserver adds
        cache.put(made)
        assert names(cache) == ["heard", "listed", "put"]
        for held in cache.items():
            placed_here = {"spec": {"nodeName": "node-1"}} if held["metadata"]["name"] == "put" else {}
            assert held.get("spec") == placed_here.get("spec") and "managedFields" not in held["metadata"], held
            assert held["metadata"]["labels"] == {"ray-cluster-name": "demo"} and held["metadata"]["uid"]
    finally:
        cache.stop()


def test_an_index_finds_one_clusters_objects_through_list_events_put_and_discard(core):
    from ray_operator.cluster_objects import cluster_of

    core.create_namespaced_pod("ray", pod("a-1", cluster="a"))
    cache = WatchCache(
        core.list_namespaced_pod, "ray", label_selector="ray-cluster-name", name="pods", index=cluster_of
    ).start()
    try:
        assert cache.wait_synced(10)
        core.create_namespaced_pod("ray", pod("a-2", cluster="a"))
        core.create_namespaced_pod("ray", pod("b-1", cluster="b"))
        wait_for(lambda: len(cache.items()) == 3, message="three pods")
        assert sorted(p["metadata"]["name"] for p in cache.indexed(("ray", "a"))) == ["a-1", "a-2"]
        core.patch_namespaced_pod("a-2", "ray", {"metadata": {"labels": {"ray-cluster-name": "b"}}})  # moves index
        wait_for(lambda: len(cache.indexed(("ray", "b"))) == 2, message="a-2 under b")
        assert [p["metadata"]["name"] for p in cache.indexed(("ray", "a"))] == ["a-1"]
        cache.discard("ray", "a-1")
        assert cache.indexed(("ray", "a")) == [] and cache.indexed(("elsewhere", "a")) == []
    finally:
        cache.stop()


def test_a_watch_that_replays_what_came_before_its_start_does_not_bring_a_deleted_pod_back(core):
    """A lagging or rewound API server may send a watch events from before the version it was asked for: a pod
    created and deleted before then must not reappear in the cache, not even for a moment; later events still
    come."""
    before = core.list_namespaced_pod("ray").metadata.resource_version
    core.create_namespaced_pod("ray", pod("gone"))
    watches: list[str] = []

    def rewinding(*args, watch=False, resource_version=None, **kwargs):
        if watch:
            watches.append(resource_version)
            resource_version = before  # every watch replays from before the pod was made
        return core.list_namespaced_pod(*args, watch=watch, resource_version=resource_version, **kwargs)

    changed: list[str] = []
    cache = WatchCache(
        rewinding,
        "ray",
        label_selector="ray-cluster-name=demo",
        watch_seconds=1,
        on_change=lambda obj: changed.append(obj["metadata"]["name"]),
    ).start()
    try:
        assert cache.wait_synced(10) and names(cache) == ["gone"]
        core.delete_namespaced_pod("gone", "ray", grace_period_seconds=0)
        wait_for(lambda: names(cache) == [], message="the deletion heard")
        core.create_namespaced_pod("ray", pod("new"))
        wait_for(lambda: names(cache) == ["new"] and len(watches) >= 3, timeout=20, message="new, then more watches")
        assert changed.count("gone") == 2, changed  # listed, deleted: never replayed back
    finally:
        cache.stop()
