"""End to end: the example RayClusters of values/ on the API server, the pod runtime and the operator, with real Ray.

The examples' idleTimeoutMinutes (5) is shortened to 0.1 so scale-down is seen within the suite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import psutil
import pytest

from ray_operator.helm_values import raycluster_from_values
from tests.harness.files import ROOT, load_yaml
from tests.harness.waiting import wait_for
from tests.harness.rayclusters import delete_and_wait_gone, monitor_pid
from tests.harness.tools import build_wheels, kubectl, venv_with

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the pod runtime needs root for network namespaces")


def example(values_file: str, name: str, namespace: str, **overrides) -> dict:
    values = load_yaml(ROOT / "values" / values_file)
    values["idleTimeoutMinutes"] = 0.1
    for pod_type in values["podTypes"].values():
        pod_type["memory"] = "512Mi"
    values.update(overrides)
    return raycluster_from_values(values, name, namespace)


def ended(pid: int) -> bool:
    """Whether the process is gone or a zombie (this machine's init may not reap the orphans it inherits)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_lifecycle_of_the_cpu_example(kube, steps):
    rc = example("cpu-only.yaml", "example-cluster", "ray")
    min_workers = rc["spec"]["podTypes"][1]["minWorkers"]
    with steps("create -> Running with minWorkers ready"):
        kube.create(rc)
        kube.wait_phase("example-cluster", "ray", "Running", timeout=120)
        wait_for(lambda: kube.status("example-cluster", "ray").get("readyWorkers") == min_workers, timeout=90)
    with steps("job needing more CPUs than the head -> workers, done"):
        assert kube.run_job("example-cluster", "ray", tasks=4) == "SUCCEEDED"
        assert len(kube.workers("example-cluster", "ray")) > min_workers
    with steps("idle -> back to minWorkers"):
        wait_for(lambda: len(kube.workers("example-cluster", "ray")) == min_workers, timeout=120)
    with steps("head pod deleted -> Recovery, 1 restart, Running"):
        kube.core.delete_namespaced_pod(kube.head("example-cluster", "ray").metadata.name, "ray")
        kube.wait_phase("example-cluster", "ray", "Running", autoscalerRetries=1, timeout=120)
    with steps("worker podType edited -> its workers replaced"):
        wait_for(lambda: len(kube.workers("example-cluster", "ray")) == min_workers, timeout=90)
        before = {w.metadata.uid for w in kube.workers("example-cluster", "ray")}
        spec = kube.get("example-cluster", "ray")["spec"]
        spec["podTypes"][1]["podConfig"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "600Mi"
        kube.patch("example-cluster", "ray", {"spec": spec})
        wait_for(
            lambda: (lambda now: len(now) == min_workers and not now & before)(
                {w.metadata.uid for w in kube.workers("example-cluster", "ray")}
            ),
            timeout=120,
        )
        # Replaced means running Ray (a worker deleted before its shell traps SIGTERM ignores it: a known gap).
        wait_for(
            lambda: all(
                "Ray runtime started." in kube.container_log("ray", w.metadata.name)
                for w in kube.workers("example-cluster", "ray")
            ),
            timeout=120,
            message="the new workers running Ray",
        )
        kube.wait_phase("example-cluster", "ray", "Running", timeout=60)
    with steps("RayCluster deleted -> no pods, services or processes"):
        delete_and_wait_gone(kube, "example-cluster", "ray")
        wait_for(lambda: kube.pod_networks() == 0, timeout=60)


def test_a_disabled_cluster_takes_jobs_without_a_token(kube, steps):
    """rayAuthentication: disabled, with a stray ~/.ray/auth_token on the machine (the stray_ray_token fixture):
    the explicit mode keeps Ray from turning token authentication on by itself."""
    with steps("disabled -> Running, no Secret, a job without a token runs"):
        kube.create(example("cpu-only.yaml", "open", "ray", rayAuthentication="disabled"))
        kube.wait_phase("open", "ray", "Running", timeout=120)
        assert kube.status("open", "ray")["rayAuthentication"] == {"mode": "disabled"}
        assert kube.ray_token("open", "ray") is None
        assert kube.run_job("open", "ray", tasks=2) == "SUCCEEDED"
    delete_and_wait_gone(kube, "open", "ray")


def test_operator_killed_mid_scale_up(kube, steps):
    rc = example("namespaced-operator.yaml", "killed", "ray")
    max_workers = rc["spec"]["podTypes"][1]["maxWorkers"]
    kube.create(rc)
    kube.wait_phase("killed", "ray", "Running", timeout=120)
    token, head = kube.ray_token("killed", "ray"), kube.head("killed", "ray").metadata.uid
    result: list[str] = []
    job = threading.Thread(target=lambda: result.append(kube.run_job("killed", "ray", tasks=4)))
    with steps("job submitted -> first worker pod"):
        job.start()
        wait_for(lambda: kube.workers("killed", "ray"), timeout=120)
    with steps("operator SIGKILLed and restarted -> job done"):
        monitor = monitor_pid(kube, "killed", "ray")
        kube.stop_operator(signal.SIGKILL)
        wait_for(lambda: ended(monitor), timeout=10, message="the killed operator's autoscaler gone")
        kube.start_operator()
        job.join(timeout=300)
        assert result == ["SUCCEEDED"]
        assert kube.ray_token("killed", "ray") == token and kube.head("killed", "ray").metadata.uid == head  # kept
    workers = kube.workers("killed", "ray")
    assert 0 < len(workers) <= max_workers  # no duplicates
    assert all(w.status.phase == "Running" for w in workers)  # no orphans: every pod is a node of the cluster
    with steps("idle -> no worker left"):
        wait_for(lambda: not kube.workers("killed", "ray"), timeout=120)
    delete_and_wait_gone(kube, "killed", "ray")


def test_two_clusters_in_two_namespaces(kube, steps):
    with steps("two examples -> both Running"):
        kube.create(example("cpu-only.yaml", "alpha", "team-a"))
        kube.create(example("namespaced-operator.yaml", "beta", "team-b"))
        kube.wait_phase("alpha", "team-a", "Running", timeout=120)
        kube.wait_phase("beta", "team-b", "Running", timeout=120)
    lines = kube.operator_lines()
    alpha = [line for line in lines if line.startswith("alpha,team-a ")]
    beta = [line for line in lines if line.startswith("beta,team-b ")]
    assert alpha and beta
    assert not [line for line in alpha if "beta" in line] and not [line for line in beta if "alpha" in line]
    with steps("both deleted -> nothing left"):
        delete_and_wait_gone(kube, "alpha", "team-a")
        delete_and_wait_gone(kube, "beta", "team-b")
        wait_for(lambda: kube.pod_networks() == 0, timeout=60)


@pytest.fixture(scope="module")
def sandbox_venv(tmp_path_factory) -> Path:
    """`pip install '.[sandbox]'`: the two wheels, in a venv made with --system-site-packages (Ray is the
    machine's); its python."""
    work = tmp_path_factory.mktemp("sandbox-venv")
    return venv_with(work / "venv", list(build_wheels(work / "dist").values()))


@pytest.mark.parametrize("mode", ["token", "disabled"])
def test_the_sandbox_as_the_readme_runs_it(sandbox_venv, tmp_path, steps, mode):
    """`ray-operator sandbox` from the installed wheels, then kubectl against it, the job command it prints (with
    the cluster's token, refused without it; or, with rayAuthentication: disabled, no token), which scales it up,
    and Ctrl-C. A stray ~/.ray/auth_token is on the machine all along (the stray_ray_token fixture)."""
    config = tmp_path / "kubeconfig"
    output = tmp_path / "sandbox.out"
    values = tmp_path / "values.yaml"
    values.write_text((ROOT / "values/cpu-only.yaml").read_text() + f"rayAuthentication: {mode}\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with open(output, "w") as out:
        sandbox = subprocess.Popen(
            [
                str(sandbox_venv.parent / "ray-operator"),
                "sandbox",
                "--values",
                str(values),
                "--kubeconfig-out",
                str(config),
                "--work-dir",
                str(tmp_path / "sandbox"),
                "--subnet",
                "10.199.0.0/16",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp_path,
            env=env,
        )
    try:

        def get() -> str:
            if not config.exists():
                return ""
            return subprocess.run(
                [str(kubectl()), "--kubeconfig", str(config), "-n", "ray", "get", "rayclusters"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout

        with steps("sandbox -> kubectl shows example-cluster Running, 0 restarts"):
            table = wait_for(lambda: (lambda out: out if "Running" in out else None)(get()), timeout=180)
            header, row = table.splitlines()
            assert header.split()[:3] == ["NAME", "STATUS", "RESTARTS"] and row.split()[:3] == [
                "example-cluster",
                "Running",
                "0",
            ]
        with steps("the printed job command (refused without the token) -> scaled up"):
            start = {"token": "RAY_AUTH_MODE=token RAY_AUTH_TOKEN=$(kubectl", "disabled": "ray job submit --address"}[
                mode
            ]
            printed = wait_for(
                lambda: [line.strip() for line in output.read_text().splitlines() if line.strip().startswith(start)],
                timeout=30,
                message="the job command",
            )[0]
            shell_env = {**env, "KUBECONFIG": str(config), "PATH": f"{kubectl().parent}:{env['PATH']}"}

            def submit(command: str) -> subprocess.CompletedProcess | None:
                """The command's outcome once the dashboard answers (a moment after the cluster is Running)."""
                done = subprocess.run(
                    ["bash", "-c", command], env=shell_env, capture_output=True, text=True, timeout=300
                )
                return None if "Failed to connect to Ray" in done.stderr else done

            if mode == "token":
                without = wait_for(lambda: submit(printed.split(") ", 1)[1]), timeout=60, interval=1)
                assert without.returncode != 0 and "Unauthorized" in without.stderr, without.stderr
            submitted = wait_for(lambda: submit(printed), timeout=60, interval=1)
            assert submitted.returncode == 0 and "4 tasks done" in submitted.stdout, submitted.stderr
            desired = subprocess.run(
                [
                    str(kubectl()),
                    "--kubeconfig",
                    str(config),
                    "-n",
                    "ray",
                    "get",
                    "pods",
                    "-l",
                    "ray-node-type=worker",
                    "-o",
                    "name",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
            assert len(desired.split()) > 1  # more than the example's one minWorker
        with steps("Ctrl-C -> everything stopped"):
            sandbox.send_signal(signal.SIGINT)
            sandbox.wait(timeout=120)
            assert sandbox.returncode == 0, output.read_text()
            assert "stopped; nothing is left running" in output.read_text()
            assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.count("rsbx-") == 0
    finally:
        if sandbox.poll() is None:  # a failed step: stopped as a user would, then killed (its children die with it)
            sandbox.send_signal(signal.SIGINT)
            try:
                sandbox.wait(timeout=120)
            except subprocess.TimeoutExpired:
                sandbox.kill()
                sandbox.wait()
