"""Unit fixtures: each test's API server is its own, so the node provider's per-process watches of a test are
stopped after it (else they retry a server that is gone for the rest of the run)."""

import pytest

from autoscaler_bridge import node_provider


@pytest.fixture(autouse=True)
def no_watch_left():
    yield
    with node_provider._caches_lock:
        caches = list(node_provider._caches.values())
        node_provider._caches.clear()
    for cache in caches:
        cache.stop()
