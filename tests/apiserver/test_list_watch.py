"""LIST with selectors and pages; WATCH with resume, bookmarks, timeouts and 410 Gone."""

import json
import threading

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from control_plane import ControlPlane
from tests.apiserver.conftest import a_server


def make(core, name, labels=None, namespace="default"):
    return core.create_namespaced_config_map(namespace, {"metadata": {"name": name, "labels": labels or {}}})


def names(items):
    return sorted(i.metadata.name for i in items)


def test_label_selectors(core):
    make(core, "a", {"app": "ray", "tier": "head"})
    make(core, "b", {"app": "ray", "tier": "worker"})
    make(core, "c", {"app": "web"})
    make(core, "d")
    select = lambda s: names(core.list_namespaced_config_map("default", label_selector=s).items)  # noqa: E731
    assert select("app=ray") == ["a", "b"]
    assert select("app==ray,tier!=head") == ["b"]
    assert select("app in (ray, web)") == ["a", "b", "c"]
    assert select("app notin (ray)") == ["c", "d"]
    assert select("tier") == ["a", "b"]
    assert select("!tier") == ["c", "d"]
    assert select("app=ray,tier in (worker)") == ["b"]
    with pytest.raises(ApiException) as raised:
        select("app in ray")
    assert raised.value.status == 400


def test_field_selectors(core):
    core.create_namespace({"metadata": {"name": "other"}})
    make(core, "x")
    make(core, "x", namespace="other")
    assert names(core.list_config_map_for_all_namespaces(field_selector="metadata.name=x").items) == ["x", "x"]
    assert [
        c.metadata.namespace
        for c in core.list_config_map_for_all_namespaces(field_selector="metadata.namespace=other").items
    ] == ["other"]
    core.create_namespaced_pod(
        "default", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}
    )
    assert names(core.list_namespaced_pod("default", field_selector="status.phase=Pending").items) == ["p"]
    assert core.list_namespaced_pod("default", field_selector="status.phase!=Pending").items == []
    with pytest.raises(ApiException) as raised:
        core.list_namespaced_config_map("default", field_selector="data.a=1")
    assert raised.value.status == 400
    assert (
        '"data.a\\" is not a known field selector: only \\"metadata.name\\", \\"metadata.namespace\\"'
        in raised.value.body
    )
    with pytest.raises(ApiException) as raised:
        core.list_namespaced_pod("default", field_selector="data.a=1")
    assert raised.value.status == 400 and "field label not supported: data.a" in raised.value.body


def test_limit_and_continue(core):
    for i in range(7):
        make(core, f"cm{i}")
    seen, token, pages = [], None, 0
    while True:
        page = core.list_namespaced_config_map("default", limit=3, _continue=token)
        seen += names(page.items)
        pages += 1
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 7 - len(seen)
    assert seen == [f"cm{i}" for i in range(7)] and pages == 3


@pytest.mark.known_difference("a continue token pages through the objects as they are now, not a snapshot")
def test_pages_are_a_snapshot_of_the_first_pages_version(core):
    for i in range(4):
        make(core, f"cm{i}")
    first = core.list_namespaced_config_map("default", limit=2)
    make(core, "cm9")  # after the first page's resourceVersion: not in its snapshot
    rest = core.list_namespaced_config_map("default", limit=10, _continue=first.metadata._continue)
    assert names(first.items) + names(rest.items) == ["cm0", "cm1", "cm2", "cm3"]
    assert rest.metadata.resource_version == first.metadata.resource_version


def test_watch_from_a_resource_version_replays_what_came_after(core):
    listed = core.list_namespaced_config_map("default")
    make(core, "w1")
    core.patch_namespaced_config_map("w1", "default", {"data": {"a": "1"}})
    core.delete_namespaced_config_map("w1", "default")
    events = [
        (e["type"], e["object"].metadata.name)
        for e in kubernetes.watch.Watch().stream(
            core.list_namespaced_config_map,
            "default",
            resource_version=listed.metadata.resource_version,
            timeout_seconds=1,
        )
    ]
    assert events == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]


def test_watch_without_version_starts_with_the_current_objects_and_follows_changes(core):
    make(core, "before")
    stream = kubernetes.watch.Watch()
    seen = []
    timer = threading.Timer(0.5, lambda: make(core, "after"))
    timer.start()
    for event in stream.stream(core.list_namespaced_config_map, "default", timeout_seconds=2):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 2:
            stream.stop()
    timer.join()
    assert seen == [("ADDED", "before"), ("ADDED", "after")]


def test_watch_with_a_selector_sees_objects_enter_and_leave_it(core):
    start = core.list_namespaced_config_map("default").metadata.resource_version
    make(core, "m")
    core.patch_namespaced_config_map("m", "default", {"metadata": {"labels": {"pick": "me"}}})
    core.patch_namespaced_config_map("m", "default", {"metadata": {"labels": {"pick": "other"}}})
    events = [
        (e["type"], e["object"].metadata.name)
        for e in kubernetes.watch.Watch().stream(
            core.list_namespaced_config_map,
            "default",
            label_selector="pick=me",
            resource_version=start,
            timeout_seconds=1,
        )
    ]
    assert events == [("ADDED", "m"), ("DELETED", "m")]


def test_a_watch_list_ends_its_initial_events_with_a_bookmark(core):
    """sendInitialEvents: the objects as ADDED, then a BOOKMARK marked k8s.io/initial-events-end (what a client
    waits for before it trusts its cache)."""
    make(core, "x")
    raw = core.list_namespaced_config_map(
        "default",
        watch=True,
        allow_watch_bookmarks=True,
        send_initial_events=True,
        resource_version_match="NotOlderThan",
        timeout_seconds=2,
        _preload_content=False,
    )
    events = [json.loads(line) for line in raw.read().decode().splitlines() if line]
    assert [(e["type"], e["object"]["metadata"].get("name")) for e in events] == [("ADDED", "x"), ("BOOKMARK", None)]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(events[1]["object"]["metadata"]["resourceVersion"]) >= int(
        events[0]["object"]["metadata"]["resourceVersion"]
    )


@pytest.mark.project_server(
    "its bookmark interval is a knob; kube-apiserver sends periodic bookmarks about once a minute"
)
def test_bookmarks(api_server, core):
    api_server.api.bookmark_interval = 0.2
    start = core.list_namespaced_config_map("default").metadata.resource_version
    raw = core.list_namespaced_config_map(
        "default",
        watch=True,
        allow_watch_bookmarks=True,
        resource_version=start,
        timeout_seconds=1,
        _preload_content=False,
    )
    lines = [line for line in raw.read().decode().splitlines() if line]
    assert lines and all('"type": "BOOKMARK"' in line for line in lines)


def test_watch_ends_at_its_timeout(core):
    import time

    began = time.monotonic()
    assert (
        list(
            kubernetes.watch.Watch().stream(
                core.list_namespaced_config_map,
                "default",
                resource_version=core.list_namespaced_config_map("default").metadata.resource_version,
                timeout_seconds=1,
            )
        )
        == []
    )
    assert 0.9 < time.monotonic() - began < 5


@pytest.fixture(params=["project", "kubernetes"])
def compactable(request, fresh_planes):
    """A server whose history is compacted on demand: the project's, or a control plane whose kube-apiserver watches
    etcd itself (its watch cache would still hold a compacted history)."""
    with a_server(request.param, fresh_planes, apiserver_flags=["--watch-cache=false"]) as server:
        yield server


def test_a_watch_from_a_compacted_version_expires(compactable, tmp_path):
    core = kubernetes.client.CoreV1Api(
        kubernetes.config.new_client_from_config(str(compactable.write_kubeconfig(tmp_path / "kubeconfig")))
    )
    old = core.list_namespaced_config_map("default").metadata.resource_version
    make(core, "x")
    newest = make(core, "y").metadata.resource_version
    if isinstance(compactable, ControlPlane):
        compactable.compact(int(newest))
    else:
        compactable.api.store.compact()
    raw = core.list_namespaced_config_map(
        "default", watch=True, resource_version=old, timeout_seconds=1, _preload_content=False
    )
    assert raw.status == 200
    [event] = [json.loads(line) for line in raw.read().decode().splitlines() if line]
    assert event["type"] == "ERROR" and (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")
    with pytest.raises(ApiException) as raised:  # as a client sees it
        list(
            kubernetes.watch.Watch().stream(
                core.list_namespaced_config_map, "default", resource_version=old, timeout_seconds=1
            )
        )
    assert raised.value.status == 410


def test_the_project_servers_history_is_bounded():
    """The oldest versions fall out of the project's server's history by themselves (its own knob: a real server's
    history is etcd's, compacted every 5 minutes)."""
    from kube_apiserver.server import ApiServer

    small = ApiServer(history_limit=5).start()
    try:
        client = kubernetes.client.CoreV1Api(
            kubernetes.client.ApiClient(kubernetes.client.Configuration(host=small.url))
        )
        first = client.list_namespaced_config_map("default").metadata.resource_version
        for i in range(10):
            client.create_namespaced_config_map("default", {"metadata": {"name": f"c{i}"}})
        with pytest.raises(ApiException) as raised:
            list(
                kubernetes.watch.Watch().stream(
                    client.list_namespaced_config_map, "default", resource_version=first, timeout_seconds=1
                )
            )
        assert raised.value.status == 410
    finally:
        small.stop()


def test_kubectl_wait_for_jsonpath(kubectl, core):
    make(core, "slow")
    timer = threading.Timer(
        0.5, lambda: core.patch_namespaced_config_map("slow", "default", {"data": {"ready": "yes"}})
    )
    timer.start()
    result = kubectl("wait", "--for=jsonpath={.data.ready}=yes", "configmap/slow", "--timeout=10s")
    timer.join()
    assert "condition met" in result.stdout
