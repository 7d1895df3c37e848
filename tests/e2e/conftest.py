"""End-to-end fixtures: the whole local stack, and a record of how long each step of each scenario took."""

from __future__ import annotations

import time
from contextlib import contextmanager

import pytest

from tests.local_kube import stack_fixtures

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


kube, no_cluster_left = stack_fixtures("e2e")


def pytest_terminal_summary(terminalreporter):
    if not TIMINGS:
        return
    terminalreporter.section("end-to-end step timings")
    for scenario, step, seconds in TIMINGS:
        terminalreporter.write_line(f"{scenario:60.60} {step:55.55} {seconds:7.1f}s")
