"""`ray-operator run`'s command line and the phase metric, without a cluster."""

import resource
import signal
import socket
import subprocess
import sys
from pathlib import Path

import click
import pytest
from prometheus_client import CollectorRegistry

from kube_apiserver.kubeconfig import write_kubeconfig
from ray_operator.cli import run
from ray_operator.metrics import ClusterCollector
from tests.harness.waiting import wait_for


def operator_run(tmp_path: Path, work: Path, *flags: str) -> list[str]:
    """`ray-operator run` against an API server that is never reached, with `work` as its work dir and `flags` (the
    metrics and health ports 0 unless given)."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:9")
    ports = {"--metrics-port": "0", "--health-port": "0"}
    ports.update(zip(flags[::2], flags[1::2], strict=True))
    command = [sys.executable, "-c", "from ray_operator.cli import main; main()", "run"]
    options = {"--kubeconfig": str(kubeconfig), "--work-dir": str(work), **ports}
    return [*command, *[arg for item in options.items() for arg in item]]


def refused(tmp_path: Path, work: Path, *flags: str) -> str:
    """What `ray-operator run` said as it refused to start (exit code 1, no traceback)."""
    result = subprocess.run(operator_run(tmp_path, work, *flags), capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    return result.stderr


def test_every_flag_of_run_is_documented():
    assert [p.name for p in run.params if isinstance(p, click.Option) and not p.help] == []


def test_clusters_are_counted_by_phase_with_their_demand_and_workers():
    registry = CollectorRegistry()
    busy = {
        "phase": "Running",
        "podTypes": [{"name": "rayWorkerType", "ready": 2, "pending": 1}],
        "autoscaler": {
            "pendingDemand": [{"resources": {"CPU": 1}, "count": 3}, {"resources": {"GPU": 1}, "count": 1}],
            "demandTotal": 4,
        },
    }
    registry.register(
        ClusterCollector(
            lambda: [
                ("ray", "busy", busy),
                ("ray", "calm", {"phase": "Running"}),
                ("ray", "bad", {"phase": "Error"}),
                ("ray", "new", {}),
            ]
        )
    )
    counts = {
        phase: registry.get_sample_value("ray_operator_clusters", {"phase": phase})
        for phase in ("Updating", "Running", "AutoscalingExceptionRecovery", "Error")
    }
    assert counts == {"Updating": 0, "Running": 2, "AutoscalingExceptionRecovery": 0, "Error": 1}
    assert registry.get_sample_value("ray_operator_pending_demand", {"namespace": "ray", "cluster": "busy"}) == 4
    assert registry.get_sample_value("ray_operator_pending_demand", {"namespace": "ray", "cluster": "calm"}) == 0
    workers = {"namespace": "ray", "cluster": "busy", "pod_type": "rayWorkerType"}
    assert registry.get_sample_value("ray_operator_workers", {**workers, "state": "ready"}) == 2
    assert registry.get_sample_value("ray_operator_workers", {**workers, "state": "pending"}) == 1


@pytest.mark.parametrize("endpoint,flag", [("/metrics", "--metrics-port"), ("/healthz", "--health-port")])
def test_a_port_in_use_is_a_clear_error_not_a_traceback(tmp_path, endpoint, flag):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        said = refused(tmp_path, tmp_path / "work", flag, str(port))
    assert f"Error: cannot serve {endpoint} on 0.0.0.0:{port}: Address already in use ({flag}:" in said


def test_a_work_dir_too_long_for_a_socket_is_a_clear_error(tmp_path):
    work = tmp_path / ("w" * 120)
    assert f"Error: --work-dir {work} is too long: its autoscalers' socket" in refused(tmp_path, work)


def test_a_work_dir_another_running_operator_uses_is_a_clear_error(tmp_path):
    """Its autoscalers' socket, fence and start gate are there: a second operator on them would serve the first's
    autoscalers."""
    work = tmp_path / "work"
    work.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as running:
        running.bind(str(work / "pods.sock"))
        running.listen()
        said = refused(tmp_path, work)
    assert f"Error: {work} is the work dir of another operator that runs" in said


def test_the_operator_may_open_as_many_files_as_its_hard_limit_allows(tmp_path):
    """Its autoscalers' connections to it count among its open files: a container's soft limit of 1,024 is raised."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    operator = subprocess.Popen(
        operator_run(tmp_path, tmp_path / "work"),
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def soft_limit():
        limits = Path(f"/proc/{operator.pid}/limits").read_text().splitlines()
        return int(next(line for line in limits if line.startswith("Max open files")).split()[3])

    try:
        wait_for(lambda: soft_limit() == hard, timeout=60, message="the soft limit raised", state=soft_limit)
    finally:
        operator.kill()  # it waits for an API server that is not there: nothing to stop in order
        operator.wait(30)


def test_sigterm_while_starting_ends_the_operator_at_once(tmp_path):
    """Its API server not answering, the operator is starting for as long as its requests retry (~40 s): SIGTERM then
    ends it rather than waiting out the pod's grace."""
    operator = subprocess.Popen(
        operator_run(tmp_path, tmp_path / "work"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: (tmp_path / "work").exists(), timeout=60, message="the operator starting")
        operator.send_signal(signal.SIGTERM)
        assert operator.wait(10) == 0
    finally:
        operator.kill()
        operator.communicate(timeout=30)
