"""The pod runtime against the API server: status like a kubelet's, restartPolicy, Service names, refusals, cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import kubernetes
import pytest

from tests.harness.waiting import wait_for
from tests.harness.local_kube import LocalKube

RAY_IMAGE = "rayproject/ray:2.60.0"
NETWORKS = [
    pytest.param("netns", marks=pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")),
    "loopback",
]


@pytest.fixture(params=NETWORKS)
def kube(tmp_path, request):
    local = LocalKube(tmp_path, network=request.param)
    try:
        local.start_server()
        local.start_runtime()
        yield local
    finally:
        local.close()


def pod(name, script, restart="Never", labels=None, image=RAY_IMAGE, grace=30):
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": grace,
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "command": ["/bin/bash", "-c", script],
                    "env": [{"name": "MY_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                }
            ],
        },
    }


def phase(kube, name):
    return kube.core.read_namespaced_pod(name, "default").status.phase


def test_a_pod_runs_with_its_own_ip_hostname_and_processes(kube):
    kube.core.create_namespaced_pod(
        "default", pod("p", "echo ip=$MY_POD_IP host=$(hostname) procs=$(ls /proc | grep -c '^[0-9]'); sleep 30")
    )
    wait_for(lambda: phase(kube, "p") == "Running", timeout=30)
    status = kube.core.read_namespaced_pod("p", "default").status
    assert status.pod_ip.startswith(kube.subnet.split("0.0/")[0])
    assert {c.type: c.status for c in status.conditions}["Ready"] == "True"
    assert status.container_statuses[0].state.running is not None
    log = wait_for(lambda: kube.core.read_namespaced_pod_log("p", "default"), timeout=10)
    assert f"ip={status.pod_ip} host=p" in log
    assert int(log.split("procs=")[1].split()[0]) <= 4  # its own PID namespace: bash, sleep and the shell's helpers


def test_exit_codes_and_restart_policies(kube):
    kube.core.create_namespaced_pod("default", pod("ok", "exit 0"))
    kube.core.create_namespaced_pod("default", pod("bad", "exit 3"))
    kube.core.create_namespaced_pod("default", pod("again", "exit 1", restart="Always"))
    wait_for(lambda: phase(kube, "ok") == "Succeeded" and phase(kube, "bad") == "Failed", timeout=30)
    terminated = kube.core.read_namespaced_pod("bad", "default").status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason, terminated.message) == (3, "Error", None)
    wait_for(
        lambda: kube.core.read_namespaced_pod("again", "default").status.container_statuses[0].restart_count >= 2,
        timeout=30,
        message="restarts",
    )
    assert phase(kube, "again") == "Running"


def test_a_failed_container_s_log_tail_is_its_termination_message_when_asked(kube):
    """terminationMessagePolicy: FallbackToLogsOnError, as a kubelet does it: the last 80 lines (2048 bytes at most)
    of a container that failed."""
    failing = pod("fails", "seq 1 100; echo 'ray: command not found' >&2; exit 127")
    failing["spec"]["containers"][0]["terminationMessagePolicy"] = "FallbackToLogsOnError"
    kube.core.create_namespaced_pod("default", failing)
    wait_for(lambda: phase(kube, "fails") == "Failed", timeout=30)
    terminated = kube.core.read_namespaced_pod("fails", "default").status.container_statuses[0].state.terminated
    lines = terminated.message.splitlines()
    assert terminated.exit_code == 127 and len(lines) == 80
    assert lines[-1] == "ray: command not found" and lines[0] == "22"


def test_service_names_resolve_to_ready_pods(kube):
    kube.core.create_namespaced_pod("default", pod("server", "sleep 60", labels={"app": "s"}))
    kube.core.create_namespaced_service(
        "default", {"metadata": {"name": "svc"}, "spec": {"selector": {"app": "s"}, "ports": [{"port": 80}]}}
    )
    wait_for(lambda: phase(kube, "server") == "Running", timeout=30)
    ip = kube.core.read_namespaced_pod("server", "default").status.pod_ip
    # Endpoints follow readiness a moment later, as in Kubernetes: the client asks until the names resolve.
    names = "svc.default.svc.cluster.local svc.default.svc svc.default"
    kube.core.create_namespaced_pod(
        "default",
        pod("client", f"until getent hosts {names} >/dev/null; do sleep 0.2; done; getent hosts {names}; sleep 60"),
    )
    log = wait_for(lambda: kube.core.read_namespaced_pod_log("client", "default"), timeout=30)
    assert log.split()[0] == ip


def test_pods_listen_on_the_same_port_each_on_its_own_ip(kube):
    serve = "hostname > /tmp/name && python3 -m http.server 8000 --directory /tmp"
    for name in ("a", "b"):
        kube.core.create_namespaced_pod("default", pod(name, serve, labels={"app": name}))
    wait_for(lambda: phase(kube, "a") == "Running" and phase(kube, "b") == "Running", timeout=30)
    ips = [kube.core.read_namespaced_pod(name, "default").status.pod_ip for name in ("a", "b")]
    fetch = (
        "import sys, urllib.request; "
        "print(urllib.request.urlopen(f'http://{sys.argv[1]}:8000/name', timeout=5).read().decode())"
    )
    until = lambda target: f'until python3 -c "{fetch}" {target} 2>/dev/null; do sleep 0.2; done'  # noqa: E731
    kube.core.create_namespaced_pod("default", pod("client", f"{until(ips[0])}; {until(ips[1])}; sleep 60"))
    kube.core.create_namespaced_pod("default", pod("self", f"({serve}) & {until('127.0.0.1')}; sleep 60"))
    wait_for(
        lambda: kube.core.read_namespaced_pod_log("client", "default").split()[:2] == ["a", "b"],
        timeout=30,
        message="each server answers on its own pod IP",
    )
    wait_for(
        lambda: "self" in kube.core.read_namespaced_pod_log("self", "default").split(),
        timeout=30,
        message="a pod reaches its own server on 127.0.0.1",
    )


def test_other_images_are_refused_with_a_clear_status(kube):
    kube.core.create_namespaced_pod("default", pod("web", "true", image="nginx:1"))
    waiting = wait_for(
        lambda: (lambda s: s and s[0].state.waiting)(
            kube.core.read_namespaced_pod("web", "default").status.container_statuses
        ),
        timeout=30,
    )
    assert waiting.reason == "ErrImagePull" and "rayproject/ray images only" in waiting.message
    assert phase(kube, "web") == "Pending"


def test_deletion_stops_the_pod_within_its_grace_period(kube):
    kube.core.create_namespaced_pod("default", pod("term", "trap 'exit 0' TERM; sleep 600 & wait", grace=20))
    wait_for(lambda: phase(kube, "term") == "Running", timeout=30)
    kube.core.delete_namespaced_pod("term", "default")
    wait_for(
        lambda: not kube.core.list_namespaced_pod("default").items,
        timeout=15,
        message="pod gone well before its grace period",
    )
    wait_for(lambda: kube.pod_networks() == 0, timeout=10, message="its namespace removed")


def test_a_shorter_grace_period_given_while_a_pod_stops_brings_its_kill_forward(kube):
    """As a kubelet does: a pod that ignores SIGTERM (a PID 1 without a handler, here one that traps it to nothing)
    is killed once the grace period of a second, shorter DELETE has passed, not at the end of its first one."""
    kube.core.create_namespaced_pod("default", pod("stubborn", "trap '' TERM; sleep 600 & wait", grace=300))
    wait_for(lambda: phase(kube, "stubborn") == "Running", timeout=30)
    kube.core.delete_namespaced_pod("stubborn", "default")
    wait_for(
        lambda: "stubborn: stopping its containers" in (kube.work / "runtime.log").read_text(),
        timeout=10,
        message="the runtime stopping the pod",
    )
    kube.core.delete_namespaced_pod("stubborn", "default", grace_period_seconds=1)
    wait_for(
        lambda: not kube.core.list_namespaced_pod("default").items,
        timeout=20,
        message="the pod killed after its shortened grace period",
    )


def test_a_deleted_pods_containers_are_reported_stopped_before_its_object_goes(kube):
    """As a kubelet does: a controller sees how a deleted pod's containers ended (exit code, termination message)."""
    ends = pod("ends", "trap 'echo stopping; exit 3' TERM; sleep 600 & wait")
    ends["spec"]["containers"][0]["terminationMessagePolicy"] = "FallbackToLogsOnError"
    kube.core.create_namespaced_pod("default", ends)
    wait_for(lambda: phase(kube, "ends") == "Running", timeout=30)
    watch = kubernetes.watch.Watch()
    events = watch.stream(
        kube.core.list_namespaced_pod, "default", field_selector="metadata.name=ends", timeout_seconds=30
    )
    kube.core.delete_namespaced_pod("ends", "default")
    last = None
    for event in events:
        if event["type"] == "DELETED":
            break
        last = event["object"]
    watch.stop()
    ended = last.status.container_statuses[0].state.terminated
    assert last.metadata.deletion_timestamp and last.status.phase == "Failed"
    assert ended.exit_code == 3 and ended.message.strip().endswith("stopping")


def test_a_pod_deleted_during_an_api_outage_is_finalized_when_the_api_returns(kube):
    kube.core.create_namespaced_pod("default", pod("outage", "trap 'sleep 1; exit 0' TERM; sleep 600 & wait"))
    wait_for(lambda: phase(kube, "outage") == "Running", timeout=30)
    kube.core.delete_namespaced_pod("outage", "default")
    port = int(kube.server.url.rsplit(":", 1)[1])
    kube.server.stop()  # the pod's processes end while the API server is away: the final delete must wait for it
    wait_for(
        lambda: "final delete failed (retrying)" in (kube.work / "runtime.log").read_text(),
        timeout=30,
        message="the runtime retrying its final delete",
    )
    kube.start_server(port)
    wait_for(lambda: not kube.core.list_namespaced_pod("default").items, timeout=30, message="the pod object deleted")


def test_nothing_is_left_when_the_runtime_is_killed(kube):
    kube.core.create_namespaced_pod("default", pod("orphan", "sleep 600"))
    wait_for(lambda: phase(kube, "orphan") == "Running", timeout=30)
    sleepers = lambda: subprocess.run(["pgrep", "-f", "sleep 600"], capture_output=True, text=True).stdout.split()  # noqa: E731
    assert sleepers()
    kube.runtime.send_signal(signal.SIGKILL)
    kube.runtime.wait(10)
    wait_for(lambda: not sleepers(), timeout=15, message="the pod's processes die with the runtime")
    kube.start_runtime()  # a new runtime removes what the killed one left behind
    assert kube.pod_networks() == 0 or wait_for(lambda: kube.pod_networks() <= 1, timeout=30)


def test_after_a_runtime_restart_a_pod_that_may_not_restart_is_failed_and_one_that_may_runs_again_at_its_ip(kube):
    """Its containers died with the runtime (a node's crash): as a kubelet, the new one reports a restartPolicy Never
    pod's containers as lost, and starts an Always pod's again, at the IP the API server holds for it."""
    kube.core.create_namespaced_pod("default", pod("never", "sleep 600"))
    kube.core.create_namespaced_pod("default", pod("always", "sleep 600", restart="Always"))
    wait_for(lambda: phase(kube, "never") == phase(kube, "always") == "Running", timeout=30)
    before = kube.core.read_namespaced_pod("always", "default").status
    kube.restart_runtime()
    wait_for(lambda: phase(kube, "never") == "Failed", timeout=30, message="the lost pod Failed")
    lost = kube.core.read_namespaced_pod("never", "default").status.container_statuses[0].state.terminated
    assert (lost.exit_code, lost.reason) == (137, "ContainerStatusUnknown")

    def running_again():
        status = kube.core.read_namespaced_pod("always", "default").status
        container = status.container_statuses[0]
        fresh = container.state.running and container.container_id != before.container_statuses[0].container_id
        return status if fresh else None

    after = wait_for(running_again, timeout=30, message="its containers started again")
    assert after.pod_ip == before.pod_ip and after.phase == "Running"


@pytest.mark.parametrize("network", NETWORKS)
def test_a_pods_private_tmp_still_shows_what_it_must_keep(tmp_path, network):
    """A checkout or venv under /tmp stays visible in a pod (its /tmp is private otherwise)."""
    kept = tmp_path / "checkout"
    kept.mkdir()
    (kept / "marker").write_text("here\n")
    (tmp_path / "hidden").write_text("not here")
    (tmp_path / "kube").mkdir()
    local = LocalKube(tmp_path / "kube", network=network)
    try:
        local.start_server()
        local.start_runtime(kept)
        local.core.create_namespaced_pod("default", pod("k", f"cat {kept}/marker; ls {tmp_path}; touch /tmp/own"))
        wait_for(lambda: phase(local, "k") == "Succeeded", timeout=30)
        assert local.core.read_namespaced_pod_log("k", "default").split() == ["here", "checkout"]
        assert not (tmp_path.parent / "own").exists() and not Path("/tmp/own").exists()
    finally:
        local.close()


def test_env_from_a_secret_waits_for_the_secret_as_a_kubelets_does(kube):
    """A required secretKeyRef whose Secret does not exist yet: Pending in CreateContainerConfigError, then the
    container starts with the key's value once the Secret is there; an optional one that is missing sets nothing."""
    spec = pod("s", 'echo "token=$RAY_AUTH_TOKEN optional=${EXTRA-unset}"; sleep 30')
    spec["spec"]["containers"][0]["env"] += [
        {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "auth", "key": "token"}}},
        {"name": "EXTRA", "valueFrom": {"secretKeyRef": {"name": "other", "key": "x", "optional": True}}},
    ]
    kube.core.create_namespaced_pod("default", spec)
    waiting = wait_for(
        lambda: (lambda s: s and s[0].state.waiting)(
            kube.core.read_namespaced_pod("s", "default").status.container_statuses
        ),
        timeout=30,
        message="the container waiting for its Secret",
    )
    assert (waiting.reason, waiting.message) == ("CreateContainerConfigError", 'secret "auth" not found')
    kube.core.create_namespaced_secret("default", {"metadata": {"name": "auth"}, "data": {"token": "czNjcmV0"}})
    wait_for(lambda: phase(kube, "s") == "Running", timeout=30)
    log = wait_for(lambda: kube.core.read_namespaced_pod_log("s", "default"), timeout=10)
    assert log.strip() == "token=s3cret optional=unset"
