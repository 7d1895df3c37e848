"""The differential suite's servers. Every test here that meets the API server runs twice with the same assertions:
on the project's API server and on a real kube-apiserver (a fresh control plane per test: etcd, kube-apiserver and
kube-controller-manager with the garbage collector, namespace and ServiceAccount controllers — what the project's
server does itself; no scheduler).

- `@pytest.mark.known_difference("what the project's server does differently")`: a difference still there. The test
  is expected to fail on the project's server (strictly: once the difference is fixed, the mark must go); the count
  of known differences is printed at the end of the run.
- `@pytest.mark.project_server("why")`: a test of the project's server's own knobs (its history size, its restart),
  which a real server does not have.
"""

from __future__ import annotations

import shutil
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from control_plane import ControlPlane
from kube_apiserver.server import ApiServer

CONTROLLERS = ["garbage-collector-controller", "namespace-controller", "serviceaccount-controller"]
KNOWN: set[str] = set()


class FreshPlanes:
    """Fresh control planes, one per test. A plane takes ~4 s of CPU to start (kube-apiserver's), a test here ~1 s:
    SPARES planes start in the background while tests run (on the 2 cores, two starting at once take no longer
    than one), and each plane stops in the background after its test."""

    SPARES = 2

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.tmp_path_factory = tmp_path_factory
        self.starting, self.stopping = ThreadPoolExecutor(self.SPARES), ThreadPoolExecutor(1)
        self.spares: deque[Future[ControlPlane]] = deque()

    def take(self, apiserver_flags: list[str] | None = None) -> ControlPlane:
        """A started plane no test has used (with `apiserver_flags`: one started now, with them)."""
        if apiserver_flags:
            return self._start(self.tmp_path_factory.mktemp("kubernetes"), apiserver_flags)
        while len(self.spares) < self.SPARES + 1:
            self.spares.append(self.starting.submit(self._start, self.tmp_path_factory.mktemp("kubernetes"), None))
        return self.spares.popleft().result()

    def give_back(self, plane: ControlPlane) -> None:
        self.stopping.submit(self._stop, plane)

    def close(self) -> None:
        for spare in self.spares:
            self.give_back(spare.result())
        self.starting.shutdown()
        self.stopping.shutdown()

    @staticmethod
    def _start(work: Path, apiserver_flags: list[str] | None) -> ControlPlane:
        return ControlPlane(work, controllers=CONTROLLERS, scheduler=False, apiserver_flags=apiserver_flags).start()

    @staticmethod
    def _stop(plane: ControlPlane) -> None:
        plane.stop()
        shutil.rmtree(plane.work / "etcd", ignore_errors=True)  # 62 MB of preallocated WAL each, ~80 of them


@pytest.fixture(scope="session")
def fresh_planes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreshPlanes]:
    planes = FreshPlanes(tmp_path_factory)
    yield planes
    planes.close()


@contextmanager
def a_server(
    kind: str,
    fresh_planes: FreshPlanes,
    admin_token: str | None = None,
    apiserver_flags: list[str] | None = None,
) -> Iterator[ApiServer | ControlPlane]:
    """The project's API server (authenticating when given `admin_token`), or a fresh control plane (its
    kube-apiserver with `apiserver_flags`)."""
    if kind == "project":
        server = ApiServer(admin_token=admin_token).start()
        try:
            yield server
        finally:
            server.stop()
        return
    plane = fresh_planes.take(apiserver_flags)
    try:
        yield plane
    finally:
        fresh_planes.give_back(plane)


@pytest.fixture(params=["project", "kubernetes"])
def api_server(request, fresh_planes) -> Iterator[ApiServer | ControlPlane]:
    with a_server(request.param, fresh_planes) as server:
        yield server


def server_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("api_server") if callspec else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        known, own = item.get_closest_marker("known_difference"), item.get_closest_marker("project_server")
        if known and server_of(item) == "project":
            item.add_marker(pytest.mark.xfail(reason=f"known difference: {known.args[0]}", strict=True))
        if own and server_of(item) == "kubernetes":
            item.add_marker(pytest.mark.skip(reason=f"the project's server only: {own.args[0]}"))


def pytest_collection_finish(session: pytest.Session) -> None:
    """The known differences among the tests that run (after -k and the like)."""
    KNOWN.update(
        item.originalname
        for item in session.items
        if isinstance(item, pytest.Function)
        if item.get_closest_marker("known_difference") and server_of(item) == "project"
    )


def pytest_terminal_summary(terminalreporter) -> None:
    if KNOWN:
        terminalreporter.section("differential suite")
        terminalreporter.write_line(f"{len(KNOWN)} known differences of the project's API server from kube-apiserver:")
        for name in sorted(KNOWN):
            terminalreporter.write_line(f"  {name}")
