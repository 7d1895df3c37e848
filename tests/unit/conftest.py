"""Unit fixtures: the Ray pods of the test's own API server, served to node providers as an operator serves them."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from autoscaler_bridge.watch_cache import WatchCache
from tests.harness.pods import served_pods


class PodService:
    """Where the test's node providers ask for pods (`path`), and the cache they are read from."""

    def __init__(self, path: Path, cache: WatchCache) -> None:
        self.path, self.cache = path, cache

    def provider_config(self, config: dict) -> dict:
        """The autoscaler config's provider section, asking this service."""
        return {**config, "pod_service": str(self.path)}


@pytest.fixture
def pod_service(kube, tmp_path) -> Iterator[PodService]:
    path = tmp_path / "pods.sock"
    with served_pods(kube, path) as cache:
        yield PodService(path, cache)
