"""The operator's watch (autoscaler_bridge.watch_cache, its one way in for RayClusters, pods and Services) against the
API server through a forced 410 Gone and a server restart: no update lost.

Real server difference: after a restart this server keeps no watch history (any older resourceVersion is
compacted), where a real one can still serve versions etcd has not compacted; clients relist in both cases.
"""

import kubernetes
import pytest

from autoscaler_bridge.kube_client import api_client
from autoscaler_bridge.watch_cache import WatchCache
from kube_apiserver.kubeconfig import write_kubeconfig
from kube_apiserver.server import ApiServer
from tests.harness.waiting import wait_for


class Watched:
    """The values of the labelled ConfigMap `w`, in the order a WatchCache heard them."""

    def __init__(self):
        self.seen: list[str] = []
        core = kubernetes.client.CoreV1Api(api_client())
        self.cache = WatchCache(
            core.list_namespaced_config_map,
            "default",
            label_selector="watched=yes",
            on_change=self.record,
            watch_seconds=30,
            name="ConfigMaps",
        )

    def record(self, obj):
        value = (obj.get("data") or {}).get("value")
        if value is not None and (not self.seen or self.seen[-1] != value):
            self.seen.append(value)

    def __enter__(self):
        self.cache.start()
        return self

    def __exit__(self, *exc):
        self.cache.stop()


@pytest.fixture
def server_with_data(tmp_path, monkeypatch):
    data = tmp_path / "store.json"
    servers = [ApiServer(data_file=data).start()]
    config = write_kubeconfig(tmp_path / "kubeconfig", servers[0].url)
    monkeypatch.setenv("KUBECONFIG", str(config))

    def restart():
        port = int(servers[-1].url.rsplit(":", 1)[1])
        servers[-1].stop()
        servers.append(ApiServer(port=port, data_file=data).start())
        return servers[-1]

    yield servers, restart
    servers[-1].stop()


def test_the_watch_loses_no_update_through_410_and_restart(server_with_data):
    servers, restart = server_with_data

    def core() -> kubernetes.client.CoreV1Api:
        return kubernetes.client.CoreV1Api(
            kubernetes.client.ApiClient(kubernetes.client.Configuration(host=servers[-1].url))
        )

    core().create_namespaced_config_map(
        "default", {"metadata": {"name": "w", "labels": {"watched": "yes"}}, "data": {"value": "1"}}
    )
    with Watched() as operator:
        wait_for(lambda: operator.seen[-1:] == ["1"], timeout=30, message="the watch saw value 1")

        # A write that the live watch cannot deliver before its history is compacted: the watch gets 410 and relists.
        api = servers[-1].api
        configmaps = api.resolve("", "v1", "configmaps")
        with api.store.changed:
            api.patch(configmaps, "default", "w", "application/merge-patch+json", b'{"data": {"value": "2"}}')
            api.store.compact()
        wait_for(lambda: operator.seen[-1:] == ["2"], timeout=30, message="the watch saw value 2 after 410")

        # The server restarts (its objects kept); a write right after is seen once the watch reconnects.
        restart()
        core().patch_namespaced_config_map("w", "default", {"data": {"value": "3"}})
        wait_for(lambda: operator.seen[-1:] == ["3"], timeout=60, message="the watch saw value 3 after the restart")
        assert operator.seen == ["1", "2", "3"]
