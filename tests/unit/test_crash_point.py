"""The crash points of the fault tests: which writes count, the ledger, and the kill after the k-th write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from autoscaler_bridge import crash_point


@pytest.mark.parametrize(
    ("method", "counted"),
    [
        ("create_namespaced_pod", True),
        ("patch_namespaced_custom_object_status", True),
        ("replace_namespaced_config_map", True),
        ("delete_namespaced_pod", True),
        ("create_namespaced_event", True),
        ("replace_namespaced_lease", False),  # membership renews on a clock: not a step of a path
        ("create_namespaced_lease", False),
        ("list_namespaced_pod", False),
        ("read_namespaced_service", False),
        ("get_namespaced_custom_object", False),
    ],
)
def test_writes_of_a_path_count_and_reads_and_leases_do_not(method: str, counted: bool) -> None:
    assert crash_point.is_counted(method) is counted


def test_without_a_ledger_nothing_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(crash_point.LEDGER_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    crash_point.wrote("create_namespaced_pod")
    assert list(tmp_path.iterdir()) == []


def test_a_ledger_alone_records_each_write_and_kills_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = tmp_path / "ledger"
    monkeypatch.setenv(crash_point.LEDGER_ENV, str(ledger))
    for method in ("create_namespaced_service", "list_namespaced_pod", "create_namespaced_pod"):
        crash_point.wrote(method)
    assert ledger.read_text().splitlines() == [
        f"{os.getpid()} create_namespaced_service",
        f"{os.getpid()} create_namespaced_pod",
    ]


# An operator (armed) forks an autoscaler; the autoscaler's write is the k-th: both die, by SIGKILL.
TREE = """
import os, sys, time
from autoscaler_bridge import crash_point
crash_point.arm()
crash_point.wrote("create_namespaced_service")
if os.fork() == 0:
    crash_point.wrote("create_namespaced_pod")
    crash_point.wrote("delete_namespaced_pod")  # never made: the kill came first
    os._exit(0)
os.wait()
crash_point.wrote("patch_namespaced_custom_object_status")  # never made either
print("survived", flush=True)
"""


def test_the_kth_write_of_the_tree_kills_the_operator(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    crash_point.crash_at(ledger, 2)
    env = {**os.environ, crash_point.LEDGER_ENV: str(ledger)}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(crash_point.__file__).parents[1]), env.get("PYTHONPATH", "")])
    run = subprocess.run([sys.executable, "-c", TREE], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == -signal.SIGKILL, run.stderr
    assert "survived" not in run.stdout
    assert [line.split()[1] for line in ledger.read_text().splitlines()] == [
        "create_namespaced_service",
        "create_namespaced_pod",
    ]


def test_a_crash_point_kills_no_process_outside_its_tree(tmp_path: Path) -> None:
    """The operator named by the environment is not this process's ancestor (it died and its PID went to another
    process): the writer alone ends."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ledger = tmp_path / "ledger"
        crash_point.crash_at(ledger, 1)
        env = {**os.environ, crash_point.LEDGER_ENV: str(ledger), crash_point.ROOT_ENV: str(bystander.pid)}
        env["PYTHONPATH"] = os.pathsep.join([str(Path(crash_point.__file__).parents[1]), env.get("PYTHONPATH", "")])
        code = "from autoscaler_bridge import crash_point; crash_point.wrote('create_namespaced_pod')"
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode == 137, run.stderr
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
