"""End-to-end fixtures: the whole local stack, and a record of how long each step of each scenario took."""

from __future__ import annotations

import secrets
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.harness.local_kube import stack_fixtures

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


@pytest.fixture(scope="session", autouse=True)
def stray_ray_token():
    """A ~/.ray/auth_token, as any earlier `ray.init()` leaves on a machine (the operator's, and the pods' home):
    Ray turns token authentication on by itself when it finds one and no mode is set, so every suite here runs with
    one present, and nothing but the explicit mode decides. Removed afterwards unless it was there before."""
    made = []
    for home in {Path.home(), Path("/root")}:
        path = home / ".ray" / "auth_token"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            path.write_text(secrets.token_hex(32))
            made.append(path)
    yield
    for path in made:
        path.unlink()


def pytest_terminal_summary(terminalreporter):
    if not TIMINGS:
        return
    terminalreporter.section("end-to-end step timings")
    for scenario, step, seconds in TIMINGS:
        terminalreporter.write_line(f"{scenario:60.60} {step:55.55} {seconds:7.1f}s")
