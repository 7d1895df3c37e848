"""End-to-end fixtures: the whole local stack, and a record of how long each step of each scenario took."""

from __future__ import annotations

import time
from contextlib import contextmanager

import pytest

from tests.local_kube import running_stack

TIMINGS: list[tuple[str, str, float]] = []


class Steps:
    def __init__(self, scenario: str) -> None:
        self.scenario = scenario

    @contextmanager
    def __call__(self, step: str):
        began = time.monotonic()
        yield
        TIMINGS.append((self.scenario, step, time.monotonic() - began))


@pytest.fixture
def steps(request) -> Steps:
    return Steps(request.node.name)


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("e2e")) as local:
        yield local


@pytest.fixture(autouse=True)
def no_cluster_left(kube):
    """Each test starts with no RayCluster, whatever the previous one left when it failed."""
    yield
    kube.delete_every_raycluster()


def pytest_terminal_summary(terminalreporter):
    if not TIMINGS:
        return
    terminalreporter.section("end-to-end step timings")
    for scenario, step, seconds in TIMINGS:
        terminalreporter.write_line(f"{scenario:60.60} {step:55.55} {seconds:7.1f}s")
