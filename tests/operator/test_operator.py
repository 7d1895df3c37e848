"""The operator with real Ray: the project's API server, the pod runtime running Ray pods, `ray-operator run`.

One environment for the module; each test makes its own RayCluster and deletes it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import psutil
import pytest
from kubernetes.client import V1Eviction, V1ObjectMeta
from kubernetes.client.exceptions import ApiException

from autoscaler_bridge.names import JOINED_TAG
from control_plane.processes import stop
from tests.harness.waiting import Sampler, holds_for, wait_for
from tests.harness.local_kube import LocalKube, job_client, run_ray_job, stack_fixtures
from tests.harness.rayclusters import delete_and_wait_gone, head_budget, monitor_pid, raycluster
from tests.harness.tools import kubectl

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the pod runtime needs root for network namespaces")


kube, no_cluster_left = stack_fixtures("kube")


def phases(kube: LocalKube, name: str, namespace: str) -> Sampler[str | None]:
    """A RayCluster's phase, sampled every 0.1 s in the background."""
    return Sampler(lambda: kube.status(name, namespace).get("phase"), interval=0.1)


def passed(samples: list[str | None]) -> list[str]:
    """The phases sampled, each once in a row, the current one last."""
    seen: list[str] = []
    for phase in samples:
        if phase and (not seen or seen[-1] != phase):
            seen.append(phase)
    return seen


def test_create_goes_updating_then_running_and_logs_carry_the_prefix(kube):
    sampled = phases(kube, "first", "ray")
    kube.create(raycluster("first"))
    status = kube.wait_phase("first", "ray", "Running", timeout=120)
    seen = passed(sampled.stop())
    assert seen[0] == "Updating" and seen[-1] == "Running" and "Error" not in seen
    assert status["autoscalerRetries"] == 0
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {"HeadReady": "True", "AutoscalerHealthy": "True"}
    assert kube.head("first", "ray").status.pod_ip == status["headPodIP"]
    about = [line for line in kube.operator_lines() if "first" in line and "ray-first" not in line]
    assert about and all(line.startswith("first,ray ") for line in about)
    assert any("StandardAutoscaler" in line for line in about)  # Ray's own autoscaler lines too
    delete_and_wait_gone(kube, "first", "ray")


def test_a_job_needing_more_cpus_scales_up_then_idle_workers_go(kube):
    kube.create(raycluster("scale", max_workers=2))
    kube.wait_phase("scale", "ray", "Running")
    workers = Sampler(lambda: len(kube.workers("scale", "ray")), interval=0.3)
    status = kube.run_job("scale", "ray", tasks=3)
    most = max(workers.stop())
    assert status == "SUCCEEDED"
    assert most == 2  # the podType's maxWorkers, not more
    wait_for(lambda: not kube.workers("scale", "ray"), timeout=90, message="idle workers removed")
    assert kube.status("scale", "ray")["phase"] == "Running"
    # Idle workers drain with nothing to wait for: Ray stops at once (their grace is minutes).
    wait_for(
        lambda: (
            kube.status("scale", "ray").get("drainingWorkers") == 0
            and not kube.core.list_namespaced_pod(
                "ray", label_selector="ray-cluster-name=scale,ray-node-type=worker"
            ).items
        ),
        timeout=30,
        message="the removed workers stopped",
        state=lambda: kube.describe("ray"),
    )
    # Each decision of the autoscaler is an Event with its reason; the view is back to the head alone.
    events = wait_for(
        lambda: (lambda got: got if {"ScaledUp", "ScaledDown"} <= set(got) else None)(
            {
                e.reason: e.message
                for e in kube.core.list_namespaced_event("ray", field_selector="involvedObject.name=scale").items
            }
        ),
        timeout=30,
        message="the scaling Events",
    )
    assert re.fullmatch(
        r"Adding \d node\(s\) of type rayWorkerType\. Pending demand: \d+x \{CPU: 1\}\.", events["ScaledUp"]
    )
    assert re.match(r"Removing \d nodes of type rayWorkerType \(idle", events["ScaledDown"]), events["ScaledDown"]
    wait_for(
        lambda: (kube.status("scale", "ray").get("autoscaler") or {}).get("usage", {}).get("CPU") == "0/1",
        timeout=30,
        message="the head's CPU alone in status.autoscaler",
    )
    # `kubectl describe` tells the story: where the cluster is and why, per podType, the autoscaler's view, its
    # decisions.
    described = kubectl_output(kube, "describe", "raycluster", "scale")
    for told in (
        r"Conditions:\n\s+Last Transition Time:.*\n\s+Message:\s+Ray's GCS answers at [\d.]+:6379\n"
        r"\s+Reason:\s+GCSAnswers\n\s+Status:\s+True\n\s+Type:\s+HeadReady\n",
        r"\s+Message:\s+the autoscaler makes its rounds\n\s+Reason:\s+Running\n\s+Status:\s+True\n"
        r"\s+Type:\s+AutoscalerHealthy\n",
        r"\s+Phase:\s+Running\n",
        r"Pod Types:\n(?:.*\n)*?\s+Desired:\s+0\n\s+Draining:\s+0\n\s+Name:\s+rayWorkerType\n\s+Pending:\s+0\n"
        r"\s+Ready:\s+0\n",
        r"Autoscaler:\n(?:.*\n)*?\s+Usage:\n\s+CPU:\s+0/1\n",
        r"Events:\n(?:.*\n)*?\s+Normal\s+ScaledUp\s+.*Adding \d node\(s\) of type rayWorkerType\. "
        r"Pending demand: \d+x \{CPU: 1\}",
        r"Events:\n(?:.*\n)*?\s+Normal\s+ScaledDown\s+.*Removing \d nodes of type rayWorkerType \(idle",
    ):
        assert re.search(told, described), f"{told!r} not in:\n{described}"
    delete_and_wait_gone(kube, "scale", "ray")


def test_demand_no_podtype_can_hold_is_named_in_status_an_event_and_kubectl(kube):
    """A task asking for 100 CPUs: no podType has them, so no worker can help. The RayCluster says so plainly (status,
    a Warning Event, `kubectl get -o wide`, `kubectl describe`), and stays Running."""
    kube.create(raycluster("toobig", max_workers=1))
    kube.wait_phase("toobig", "ray", "Running")
    client = job_client(kube.head("toobig", "ray").status.pod_ip, kube.ray_token("toobig", "ray"))
    script = "import ray\nray.init()\nray.get(ray.remote(num_cpus=100)(lambda: 1).remote())\n"
    job = client.submit_job(entrypoint=f'python -c "{script}"', entrypoint_num_cpus=0)
    try:
        status = wait_for(
            lambda: (lambda s: s if (s.get("autoscaler") or {}).get("infeasibleDemand") else None)(
                kube.status("toobig", "ray")
            ),
            timeout=90,
            message="infeasible demand in status",
        )
        assert status["autoscaler"]["infeasibleDemand"] == [{"resources": {"CPU": 100.0}, "count": 1}]
        assert status["phase"] == "Running" and "no podType can hold {CPU: 100}" in status["message"]
        wait_for(
            lambda: [
                e
                for e in kube.core.list_namespaced_event("ray", field_selector="involvedObject.name=toobig").items
                if e.reason == "InfeasibleDemand" and e.type == "Warning"
            ],
            timeout=60,
            message="the InfeasibleDemand Event",
        )
        wide = kubectl_output(kube, "get", "rayclusters", "toobig", "-o", "wide")
        assert "USAGE" in wide and "DEMAND" in wide and "1x {CPU: 100}" in wide and "CPU 0/1" in wide, wide
        described = kubectl_output(kube, "describe", "raycluster", "toobig")
        assert "Infeasible Demand" in described and "InfeasibleDemand" in described, described
        assert not kube.workers("toobig", "ray")  # nothing launched in vain
    finally:
        client.stop_job(job)
    delete_and_wait_gone(kube, "toobig", "ray")


def kubectl_output(kube: LocalKube, *args: str) -> str:
    return subprocess.run(
        [str(kubectl()), "--kubeconfig", str(kube.kubeconfig), "-n", "ray", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def test_a_killed_autoscaler_is_counted_in_status_and_metrics_and_restarted_without_touching_other_clusters(kube):
    kube.create(raycluster("crash"))
    kube.create(raycluster("bystander"))
    kube.wait_phase("crash", "ray", "Running")
    kube.wait_phase("bystander", "ray", "Running")
    bystander_pid = monitor_pid(kube, "bystander", "ray")
    head_uid = kube.head("crash", "ray").metadata.uid
    sampled = phases(kube, "crash", "ray")
    os.kill(monitor_pid(kube, "crash", "ray"), signal.SIGKILL)
    kube.wait_phase("crash", "ray", "Running", autoscalerRetries=1, timeout=60)
    assert passed(sampled.stop())[-2:] == ["AutoscalingExceptionRecovery", "Running"]
    assert kube.head("crash", "ray").metadata.uid == head_uid  # the head was fine: only the autoscaler restarted
    events = kube.core.list_namespaced_event(
        "ray", field_selector="involvedObject.name=crash,reason=AutoscalerFailed"
    ).items
    assert len(events) == 1 and "exited" in events[0].message
    assert kube.status("bystander", "ray")["phase"] == "Running"
    assert kube.status("bystander", "ray")["autoscalerRetries"] == 0
    assert monitor_pid(kube, "bystander", "ray") == bystander_pid
    restarts = "ray_operator_autoscaler_restarts_total"
    assert kube.metric(restarts, namespace="ray", cluster="crash") == 1
    assert kube.metric(restarts, namespace="ray", cluster="bystander") is None
    wait_for(
        lambda: kube.metric("ray_operator_clusters", phase="Running") == 2,
        timeout=30,
        message="/metrics: two clusters Running (earlier tests' clusters forgotten)",
    )
    assert kube.metric("ray_operator_clusters", phase="AutoscalingExceptionRecovery") == 0
    assert kube.metric("ray_operator_reconcile_duration_seconds_count") > 0
    delete_and_wait_gone(kube, "crash", "ray")
    wait_for(
        lambda: kube.metric(restarts, namespace="ray", cluster="crash") is None,
        timeout=30,
        message="/metrics: the deleted cluster's series removed",
    )
    delete_and_wait_gone(kube, "bystander", "ray")


def test_a_hung_autoscaler_is_counted_and_restarted(kube):
    kube.create(raycluster("hang"))
    kube.wait_phase("hang", "ray", "Running")
    pid = monitor_pid(kube, "hang", "ray")
    os.kill(pid, signal.SIGSTOP)  # alive, but making no more rounds
    status = kube.wait_phase("hang", "ray", "Running", autoscalerRetries=1, timeout=90)
    assert monitor_pid(kube, "hang", "ray") != pid
    assert not os.path.exists(f"/proc/{pid}")
    events = kube.core.list_namespaced_event(
        "ray", field_selector="involvedObject.name=hang,reason=AutoscalerFailed"
    ).items
    assert "made no progress" in events[0].message
    assert status["conditions"][1] == {**status["conditions"][1], "type": "AutoscalerHealthy", "status": "True"}
    delete_and_wait_gone(kube, "hang", "ray")


def test_pending_pods_do_not_run_away(kube):
    """Workers whose image no node can run stay Pending: no more than --max-pending-pods (2) are launched."""
    stuck = raycluster("stuck", min_workers=4, max_workers=4)
    stuck["spec"]["podTypes"][1]["podConfig"]["spec"]["containers"][0]["image"] = "example.com/not-ray:1"
    kube.create(stuck)
    kube.wait_phase("stuck", "ray", "Running")
    wait_for(lambda: len(kube.workers("stuck", "ray")) == 2, timeout=60, message="two Pending workers")
    status = wait_for(
        lambda: (lambda s: s if any("Pending" in t.get("message", "") for t in s.get("podTypes", [])) else None)(
            kube.status("stuck", "ray")
        ),
        timeout=30,
        message="the reason in status",
    )
    [worker_type] = [t for t in status["podTypes"] if t["name"] == "rayWorkerType"]
    assert worker_type["pending"] == 2 and worker_type["ready"] == 0
    assert worker_type["message"] == "2 pods are Pending (the bound is 2): no more are launched until they start"
    # The autoscaler keeps trying to launch the other two, and the bound holds them back: a Warning says so.
    [held] = wait_for(
        lambda: [
            e
            for e in kube.core.list_namespaced_event("ray", field_selector="involvedObject.name=stuck").items
            if e.reason == "LaunchesHeldBack"
        ],
        timeout=90,
        message="a LaunchesHeldBack Event",
        state=lambda: [
            (e.reason, e.count, e.message)
            for e in kube.core.list_namespaced_event("ray", field_selector="involvedObject.name=stuck").items
        ],
    )
    assert held.type == "Warning" and held.message == (
        "Failed to launch 2 node(s) of type rayWorkerType. (Pending pods): 2 pods are Pending (the bound is 2): "
        "no more are launched until they start."
    )

    def held_back() -> int:
        return sum(
            line.startswith("stuck,ray ") and "not launching 2 rayWorkerType pods" in line
            for line in kube.operator_lines()
        )

    rounds = held_back()
    wait_for(lambda: held_back() >= rounds + 3, timeout=60, message="three more autoscaler rounds held back")
    assert len(kube.workers("stuck", "ray")) == 2
    delete_and_wait_gone(kube, "stuck", "ray")


def test_an_autoscaler_that_outgrows_its_memory_limit_restarts_alone(kube):
    """minWorkers 2,000,000,000 (a valid count) makes Ray's autoscaler plan that many nodes in one list: the kernel
    stops it at its memory limit (RLIMIT_DATA, --monitor-memory-limit, 384 MiB here: it is reached sooner than the
    default 1024, and an autoscaler's data is ~150 MiB); it is counted and restarted, and the cluster beside it, in
    the same operator, runs on untouched. (The stall check waits longer here: the runaway round is busy until the
    kernel stops it, and the memory limit is what is shown.)"""
    kube.stop_operator()
    kube.start_operator("--stall-rounds", "60", "--monitor-memory-limit", "384")
    kube.create(raycluster("thin"))
    kube.wait_phase("thin", "ray", "Running")
    fat = raycluster("fat", min_workers=2_000_000_000, max_workers=2_000_000_000)
    fat["spec"]["maxWorkers"] = 2_000_000_000
    kube.create(fat)
    wait_for(
        lambda: (lambda s: s if s.get("autoscalerRetries", 0) >= 1 else None)(kube.status("fat", "ray")),
        timeout=180,
        message="a counted memory failure",
        state=lambda: kube.status("fat", "ray"),
    )
    events = kube.core.list_namespaced_event(
        "ray", field_selector="involvedObject.name=fat,reason=AutoscalerFailed"
    ).items
    assert "limit of 384 MiB" in events[0].message, events[0].message
    thin = kube.status("thin", "ray")
    assert (thin["phase"], thin["autoscalerRetries"]) == ("Running", 0)
    delete_and_wait_gone(kube, "fat", "ray")
    delete_and_wait_gone(kube, "thin", "ray")
    kube.stop_operator()
    kube.start_operator()


def live_autoscalers(kube: LocalKube, name: str, namespace: str) -> list[int]:
    """The autoscaler processes of a cluster still running, whichever operator started them."""
    return sorted(kube.live_autoscalers(namespace).get(name, set()))


def events_of(kube: LocalKube, name: str, reason: str) -> list:
    return kube.core.list_namespaced_event("ray", field_selector=f"involvedObject.name={name},reason={reason}").items


def test_a_second_install_leaves_a_cluster_the_first_runs_alone_and_says_so(kube):
    """An operator of another install (another group: a second release, a stray kubectl apply) for the same clusters
    runs no second autoscaler while the first one's Lease is renewed, and says who runs the cluster; once the first
    stops (its Lease deleted), the second takes the cluster over and adopts its pods: no pod made or deleted, no
    restart counted."""
    kube.create(raycluster("shared", min_workers=1))
    kube.wait_phase("shared", "ray", "Running")
    wait_for(lambda: kube.workers("shared", "ray"), timeout=90, message="the minWorkers worker")
    first = kube.status("shared", "ray")["operator"]
    pods = {p.metadata.uid for p in kube.pods("ray", "ray-cluster-name=shared")}
    kube.start_operator("--group", "another-install")
    [event] = wait_for(
        lambda: events_of(kube, "shared", "OwnedByAnotherOperator"), timeout=60, message="the second operator's Event"
    )
    assert (
        f"run by the operator {first['identity']} (Lease {first['lease']})" in event.message and event.type == "Warning"
    )
    assert len(live_autoscalers(kube, "shared", "ray")) == 1
    wait_for(
        lambda: (
            kube.status("shared", "ray").get("operator") == first and len(live_autoscalers(kube, "shared", "ray")) == 1
        ),
        timeout=10,
        interval=1,
        message="still one autoscaler, the first operator's",
    )  # holds over the checks
    stop(kube.operators[-2])  # SIGTERM: the first operator deletes its Lease on the way out
    second = wait_for(
        lambda: (lambda o: o if o and o != first else None)(kube.status("shared", "ray").get("operator")),
        timeout=60,
        message="the second operator owning the cluster",
    )
    [taken] = wait_for(lambda: events_of(kube, "shared", "TakenOver"), timeout=30, message="the TakenOver Event")
    assert f"taking the cluster over from {first['identity']}" in taken.message and second["identity"] in taken.message
    wait_for(
        lambda: (
            len(live_autoscalers(kube, "shared", "ray")) == 1 and kube.status("shared", "ray")["phase"] == "Running"
        ),
        timeout=60,
        message="the second operator's autoscaler running",
    )
    assert {p.metadata.uid for p in kube.pods("ray", "ray-cluster-name=shared")} == pods
    assert kube.status("shared", "ray")["autoscalerRetries"] == 0
    delete_and_wait_gone(kube, "shared", "ray")


def test_a_paused_replicas_autoscaler_stops_itself_and_the_other_replica_takes_the_cluster_over(kube):
    """Two replicas of one group; the one running a cluster is paused (SIGSTOP: it cannot stop anything). Its
    autoscaler finds the Lease deadline passed and stops itself before the other replica may take the cluster over;
    the other takes it over once the paused one's Lease is 15 s unchanged; resumed, the paused one finds its Lease
    lapsed and runs nothing it no longer owns. Never two autoscalers for the cluster, no pod made or deleted."""
    kube.create(raycluster("paused", min_workers=1))
    kube.wait_phase("paused", "ray", "Running")
    wait_for(lambda: kube.workers("paused", "ray"), timeout=90, message="the minWorkers worker")
    first = kube.status("paused", "ray")["operator"]
    pods = {p.metadata.uid for p in kube.pods("ray", "ray-cluster-name=paused")}
    second = kube.start_operator()
    [running] = live_autoscalers(kube, "paused", "ray")
    owner = kube.operators[-2]
    autoscalers = Sampler(lambda: len(live_autoscalers(kube, "paused", "ray")), interval=0.1)
    os.kill(owner.pid, signal.SIGSTOP)
    try:
        wait_for(
            lambda: not psutil.pid_exists(running) or psutil.Process(running).status() == psutil.STATUS_ZOMBIE,
            timeout=30,
            message="the paused replica's autoscaler stopping itself",
        )
        taken = wait_for(
            lambda: (lambda o: o if o and o != first else None)(kube.status("paused", "ray").get("operator")),
            timeout=60,
            message="the other replica owning the cluster",
        )
        wait_for(
            lambda: len(live_autoscalers(kube, "paused", "ray")) == 1,
            timeout=60,
            message="the other replica's autoscaler running",
        )
    finally:
        os.kill(owner.pid, signal.SIGCONT)
    wait_for(
        lambda: any("lapsed" in line for line in kube.operator_lines()),
        timeout=30,
        message="the resumed replica finding its Lease lapsed",
    )
    wait_for(
        lambda: kube.status("paused", "ray").get("operator") == taken and len(autoscalers.samples) > 100,
        timeout=30,
        message="the cluster staying with the other replica",
    )
    seen = autoscalers.stop()  # the most autoscalers the cluster had at once, every 100 ms
    assert max(seen) == 1, seen
    assert {p.metadata.uid for p in kube.pods("ray", "ray-cluster-name=paused")} == pods
    assert kube.status("paused", "ray")["autoscalerRetries"] == 0
    assert second.poll() is None and owner.poll() is None
    delete_and_wait_gone(kube, "paused", "ray")
    kube.stop_operator()
    kube.start_operator()  # one operator again, serving the metrics later tests read


def test_an_enormous_exponent_is_an_error_at_once_while_the_cluster_beside_it_scales_up(kube):
    """cpu: 1e1000000 passed the CRD (podConfig keeps unknown fields) and once held a core for 49 s: now it is a
    listed problem, and the operator keeps serving the healthy cluster beside it."""
    kube.create(raycluster("healthy", max_workers=1))
    kube.wait_phase("healthy", "ray", "Running")
    hostile = raycluster("hostile")
    hostile["spec"]["podTypes"][1]["podConfig"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "1e1000000"
    hostile["spec"]["podTypes"][1]["podConfig"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "1e1000000"
    job: list[str] = []
    submitted = threading.Thread(target=lambda: job.append(kube.run_job("healthy", "ray", tasks=2, seconds=3)))
    created = time.monotonic()
    kube.create(hostile)
    submitted.start()
    status = kube.wait_phase("hostile", "ray", "Error", timeout=30)
    print(f"hostile RayCluster in Error {time.monotonic() - created:.2f}s after its creation")
    assert (
        "limits.cpu: '1e1000000' is more than Kubernetes allows for a quantity (9223372036854775807)"
        in status["message"]
    )
    assert events_of(kube, "hostile", "InvalidSpec")
    wait_for(lambda: kube.workers("healthy", "ray"), timeout=90, message="the healthy cluster scaled up")
    submitted.join(timeout=180)
    assert job == ["SUCCEEDED"]
    assert not kube.pods("ray", "ray-cluster-name=hostile")
    delete_and_wait_gone(kube, "hostile", "ray")
    delete_and_wait_gone(kube, "healthy", "ray")


def test_a_deleted_head_pod_is_counted_and_the_cluster_recovers(kube):
    kube.create(raycluster("headless", min_workers=1))
    kube.wait_phase("headless", "ray", "Running")
    wait_for(lambda: kube.workers("headless", "ray"), timeout=60, message="the minWorkers worker")
    old_head = kube.head("headless", "ray").metadata
    sampled = phases(kube, "headless", "ray")
    kube.core.delete_namespaced_pod(old_head.name, "ray")
    kube.wait_phase("headless", "ray", "Running", autoscalerRetries=1, timeout=120)
    assert "AutoscalingExceptionRecovery" in passed(sampled.stop())
    assert kube.head("headless", "ray").metadata.uid != old_head.uid
    wait_for(lambda: len(kube.workers("headless", "ray")) == 1, timeout=90, message="minWorkers honoured again")
    delete_and_wait_gone(kube, "headless", "ray")


def test_the_heads_disruption_budget_refuses_its_eviction_until_the_cluster_opts_out(kube):
    """`kubectl drain` evicts: the real API server refuses to evict a Ready head under the budget the operator keeps
    (the disruption controller counts it); headPodDisruptionBudget: false deletes the budget, true makes it again,
    and neither touches a pod."""
    kube.create(raycluster("guarded"))
    kube.wait_phase("guarded", "ray", "Running")
    wait_for(
        lambda: (lambda b: b is not None and b.status is not None and b.status.current_healthy == 1)(
            head_budget(kube, "guarded", "ray")
        ),
        timeout=60,
        message="the head budget counting the Ready head",
    )
    budget = head_budget(kube, "guarded", "ray")
    assert budget.spec.selector.match_labels == {"ray-cluster-name": "guarded", "ray-node-type": "head"}
    assert budget.status.disruptions_allowed == 0
    head = kube.head("guarded", "ray").metadata
    with pytest.raises(ApiException) as refused:
        kube.core.create_namespaced_pod_eviction(head.name, "ray", V1Eviction(metadata=V1ObjectMeta(name=head.name)))
    assert refused.value.status == 429 and "disruption budget" in refused.value.body

    kube.patch("guarded", "ray", {"spec": {"headPodDisruptionBudget": False}})
    wait_for(lambda: head_budget(kube, "guarded", "ray") is None, timeout=30, message="the budget deleted")
    kube.patch("guarded", "ray", {"spec": {"headPodDisruptionBudget": True}})
    wait_for(lambda: head_budget(kube, "guarded", "ray"), timeout=30, message="the budget made again")
    assert kube.head("guarded", "ray").metadata.uid == head.uid
    kube.wait_phase("guarded", "ray", "Running")
    delete_and_wait_gone(kube, "guarded", "ray")


def test_a_head_that_fails_at_once_is_recreated_with_backoff(kube):
    """A head whose Ray cannot start: each new head waits out the restart backoff (1, 2, 4, 4 s here, of which half is
    drawn at random: at least 0.5, 1, 2, 2 s), no churn."""
    broken = raycluster("broken")
    broken["spec"]["headStartRayCommands"] = ["ray start --head --port=6379 --no-monitor --no-such-flag"]
    kube.create(broken)
    wait_for(
        lambda: kube.status("broken", "ray").get("autoscalerRetries", 0) >= 5, timeout=120, message="five head failures"
    )
    created = [
        datetime.strptime(" ".join(line.split()[1:3]), "%Y-%m-%d %H:%M:%S,%f")
        for line in kube.operator_lines()
        if line.startswith("broken,ray ") and "created head pod" in line
    ]
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(created, created[1:], strict=False)]
    assert len(gaps) >= 4 and all(gap >= min(4, 2**i) / 2 for i, gap in enumerate(gaps)), gaps
    status = kube.status("broken", "ray")
    assert status["phase"] == "AutoscalingExceptionRecovery"
    # The cause, quoted from the head container's last log line with its exit code, and how often in a row.
    assert re.search(
        r"the head pod broken-\S+ is Failed: container ray-node exited with code 2: .*"
        r"No such option '--no-such-flag'.* \(\d+ times in a row\)",
        status["message"],
    ), status["message"]
    # One Warning Event for the repeated cause, counted, not one per failure.
    failed = [
        e
        for e in kube.core.list_namespaced_event("ray", field_selector="involvedObject.name=broken").items
        if e.reason == "AutoscalerFailed"
    ]
    assert len(failed) == 1 and failed[0].count >= 5 and failed[0].type == "Warning", failed
    assert "No such option '--no-such-flag'" in failed[0].message
    delete_and_wait_gone(kube, "broken", "ray")


def test_spec_changes_restart_replace_or_reconfigure(kube):
    kube.create(raycluster("changes", min_workers=1, max_workers=2))
    kube.wait_phase("changes", "ray", "Running")
    wait_for(lambda: len(kube.workers("changes", "ray")) == 1, timeout=60, message="one worker")
    head, [worker] = kube.head("changes", "ray").metadata.uid, [w.metadata.uid for w in kube.workers("changes", "ray")]

    # min/max workers, upscalingSpeed: only the autoscaler's config changes; no pod churn.
    spec = kube.get("changes", "ray")["spec"]
    spec["podTypes"][1]["maxWorkers"] = 3
    spec["maxWorkers"], spec["upscalingSpeed"] = 3, 5.0
    generation = kube.patch("changes", "ray", {"spec": spec})["metadata"]["generation"]
    kube.wait_phase("changes", "ray", "Running", observedGeneration=generation)  # an autoscaler round on it
    assert kube.head("changes", "ray").metadata.uid == head
    assert [w.metadata.uid for w in kube.workers("changes", "ray")] == [worker]

    # A worker podType's pod template: its workers are replaced, the head stays.
    spec = kube.get("changes", "ray")["spec"]
    spec["podTypes"][1]["podConfig"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "600Mi"
    kube.patch("changes", "ray", {"spec": spec})
    wait_for(
        lambda: [w.metadata.uid for w in kube.workers("changes", "ray")] not in ([worker], []),
        timeout=90,
        message="the worker replaced",
    )
    assert kube.head("changes", "ray").metadata.uid == head
    kube.wait_phase("changes", "ray", "Running", timeout=90)

    # The head podType's CPU or memory: the cluster restarts on a new head.
    spec = kube.get("changes", "ray")["spec"]
    spec["podTypes"][0]["podConfig"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "600Mi"
    kube.patch("changes", "ray", {"spec": spec})
    wait_for(
        lambda: (lambda new: new is not None and new.metadata.uid != head)(kube.head("changes", "ray")),
        timeout=60,
        message="a new head",
    )
    status = kube.wait_phase("changes", "ray", "Running", timeout=120)
    assert status["autoscalerRetries"] == 0  # a change is not a failure
    assert status["observedGeneration"] == kube.get("changes", "ray")["metadata"]["generation"]
    delete_and_wait_gone(kube, "changes", "ray")


def test_an_invalid_cluster_errors_while_a_valid_one_runs_beside_it(kube):
    kube.create(raycluster("good"))
    bad = raycluster("bad")
    bad["spec"]["podTypes"][1]["podConfig"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "lots"}}
    with pytest.raises(ApiException) as refused:  # the CRD types a container's quantities: refused at admission
        kube.create(bad)
    assert refused.value.status == 422 and "limits.cpu in body should match" in refused.value.body
    bad["spec"]["podTypes"][1]["podConfig"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "-1"}}
    kube.create(bad)  # the quantity pattern allows a sign: the operator refuses it
    status = kube.wait_phase("bad", "ray", "Error")
    assert "spec.podTypes[1].podConfig.spec.containers[0].resources.limits.cpu: '-1' is negative" in status["message"]
    events = kube.core.list_namespaced_event("ray", field_selector="involvedObject.name=bad,reason=InvalidSpec").items
    assert len(events) == 1 and events[0].type == "Warning"
    assert any(line.startswith("bad,ray ") and "invalid RayCluster" in line for line in kube.operator_lines())
    assert kube.pods("ray", "ray-cluster-name=bad") == []
    kube.wait_phase("good", "ray", "Running")
    kube.delete("bad", "ray")
    delete_and_wait_gone(kube, "good", "ray")


def test_an_api_server_restart_does_not_end_scaling(kube):
    kube.create(raycluster("outage", max_workers=1))
    kube.wait_phase("outage", "ray", "Running")
    kube.restart_server(down_for=3)
    assert kube.run_job("outage", "ray", tasks=2) == "SUCCEEDED"
    assert kube.status("outage", "ray")["autoscalerRetries"] == 0
    delete_and_wait_gone(kube, "outage", "ray")


def autoscaler_healthy_since(status: dict, since: datetime) -> bool:
    """Whether the status says the cluster's autoscaler became healthy (made a round) at `since` or later."""
    return any(
        c["type"] == "AutoscalerHealthy"
        and c["status"] == "True"
        and datetime.fromisoformat(c["lastTransitionTime"].replace("Z", "+00:00")) >= since
        for c in status.get("conditions") or []
    )


def test_a_restarted_operator_adopts_clusters_without_pod_churn(kube):
    kube.create(raycluster("adopt", min_workers=1))
    kube.wait_phase("adopt", "ray", "Running")
    wait_for(lambda: len(kube.workers("adopt", "ray")) == 1, timeout=60, message="one worker")
    before = sorted(p.metadata.uid for p in kube.pods("ray", "ray-cluster-name=adopt"))
    for how in (signal.SIGTERM, signal.SIGKILL):
        kube.stop_operator(how)
        assert sorted(p.metadata.uid for p in kube.pods("ray", "ray-cluster-name=adopt")) == before
        restarted = datetime.now(timezone.utc).replace(microsecond=0)
        kube.start_operator()
        wait_for(
            lambda since=restarted: autoscaler_healthy_since(kube.status("adopt", "ray"), since),
            timeout=120,
            message="a round of the new operator's autoscaler",
        )
        kube.wait_phase("adopt", "ray", "Running")
        assert sorted(p.metadata.uid for p in kube.pods("ray", "ray-cluster-name=adopt")) == before
    delete_and_wait_gone(kube, "adopt", "ray")


def test_deletion_leaves_nothing_even_with_the_operator_stopped(kube):
    kube.create(raycluster("gone1", min_workers=1))
    kube.wait_phase("gone1", "ray", "Running")
    delete_and_wait_gone(kube, "gone1", "ray")
    kube.create(raycluster("gone2", min_workers=1))
    kube.wait_phase("gone2", "ray", "Running")
    wait_for(lambda: kube.workers("gone2", "ray"), timeout=60, message="a worker")
    kube.stop_operator()
    delete_and_wait_gone(
        kube, "gone2", "ray", operator_running=False
    )  # ownerReferences: no operator, no finalizer needed
    kube.start_operator()
    wait_for(lambda: kube.pod_networks() == 0, timeout=60, message="no pod namespaces left")


def test_a_namespaced_operator_ignores_other_namespaces(kube):
    kube.stop_operator()
    kube.start_operator("--namespace", "team-a")
    kube.create(raycluster("theirs", "team-b"))  # first: an operator that saw it would have made it a status by now
    kube.create(raycluster("mine", "team-a"))
    kube.wait_phase("mine", "team-a", "Running")
    assert kube.status("theirs", "team-b") == {} and kube.pods("team-b") == []
    delete_and_wait_gone(kube, "mine", "team-a")
    kube.delete("theirs", "team-b")
    kube.stop_operator()
    kube.start_operator()


def test_clusters_created_together_start_their_pods_within_the_bound_per_node(kube):
    """Two RayClusters with a worker each, at once, with one Ray pod allowed to start at a time on the node: never
    two pods starting (heads of clusters not yet Running, workers whose Ray node has not joined), and both run with
    their workers."""
    kube.stop_operator()
    kube.start_operator("--max-starting-pods", "1")
    names = [f"together{i}" for i in range(2)]

    def pods_starting() -> tuple[int, bool]:
        """Ray pods starting; whether a cluster says it waits for the bound."""
        pods = [  # first: a head listed here was made after its peer ran, a worker unlabelled was starting then
            p
            for p in kube.pods("ray")
            if p.metadata.labels.get("ray-cluster-name") in names
            and not p.metadata.deletion_timestamp
            and p.status.phase in ("Pending", "Running")
        ]
        statuses = {name: kube.status(name, "ray") for name in names}
        starting = sum(
            statuses[p.metadata.labels["ray-cluster-name"]].get("phase") != "Running"
            if p.metadata.labels["ray-node-type"] == "head"
            else JOINED_TAG not in p.metadata.labels
            for p in pods
        )
        return starting, any("Ray pods are starting on each node" in s.get("message", "") for s in statuses.values())

    sampler = Sampler(pods_starting)
    for name in names:
        kube.create(raycluster(name, min_workers=1))
    for name in names:
        kube.wait_phase(name, "ray", "Running", timeout=240)
    wait_for(
        lambda: all(
            [JOINED_TAG in p.metadata.labels for p in kube.pods("ray", f"ray-cluster-name={name},ray-node-type=worker")]
            == [True]
            for name in names
        ),
        timeout=240,
        message="every cluster's worker joined",
    )
    samples = sampler.stop()
    assert max(starting for starting, _ in samples) == 1
    assert any(waited for _, waited in samples)  # the bound held clusters back
    for name in names:
        delete_and_wait_gone(kube, name, "ray")
    kube.stop_operator()
    kube.start_operator()


def test_token_authentication_locks_the_cluster_and_disabled_opens_it(kube):
    """By default a job without the cluster's token is refused and one with it runs; the token reaches the pods
    only through a secretKeyRef; rayAuthentication: disabled restarts the cluster open, as clusters were before."""
    from ray.exceptions import AuthenticationError

    kube.create(raycluster("locked"))
    kube.wait_phase("locked", "ray", "Running")
    auth = kube.status("locked", "ray")["rayAuthentication"]
    assert auth["mode"] == "token" and auth["secretName"] == "locked-ray-auth"
    assert auth["submitJob"].startswith(
        "RAY_AUTH_MODE=token RAY_AUTH_TOKEN=$(kubectl -n ray get secret locked-ray-auth"
    )
    described = subprocess.run(
        [str(kubectl()), "--kubeconfig", str(kube.kubeconfig), "-n", "ray", "describe", "raycluster", "locked"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert re.search(r"Secret Name:\s+locked-ray-auth\n", described)
    assert re.search(r"Submit Job:\s+" + re.escape(auth["submitJob"]) + "\n", described)
    token = kube.ray_token("locked", "ray")
    head = kube.head("locked", "ray")
    env = {e.name: e for e in head.spec.containers[0].env}
    assert (
        env["RAY_AUTH_MODE"].value == "token"
        and env["RAY_AUTH_TOKEN"].value_from.secret_key_ref.name == "locked-ray-auth"
    )
    assert len(token) == 64 and token not in json.dumps(kube.client.sanitize_for_serialization(head))
    with pytest.raises(AuthenticationError, match="Unauthorized"):
        run_ray_job(head.status.pod_ip, tasks=1)
    assert kube.run_job("locked", "ray", tasks=1) == "SUCCEEDED"

    kube.patch("locked", "ray", {"spec": {"rayAuthentication": "disabled"}})
    wait_for(
        lambda: (lambda h: h is not None and h.metadata.uid != head.metadata.uid)(kube.head("locked", "ray")),
        timeout=60,
        message="the head restarted for the new mode",
    )
    kube.wait_phase("locked", "ray", "Running")
    assert kube.status("locked", "ray")["rayAuthentication"] == {"mode": "disabled"}
    assert run_ray_job(kube.head("locked", "ray").status.pod_ip, tasks=1) == "SUCCEEDED"  # no token needed
    delete_and_wait_gone(kube, "locked", "ray")


def test_an_autoscaler_the_head_refuses_says_why_and_recovers_once_it_can_authenticate(kube):
    """The token Secret overwritten with another token: the next autoscaler is refused by the head, and the RayCluster
    quotes the head's answer (status, Event) instead of a bare exit code; the Secret put back, it runs again."""
    kube.create(raycluster("refused"))
    kube.wait_phase("refused", "ray", "Running")
    head_uid = kube.head("refused", "ray").metadata.uid
    secret = kube.core.read_namespaced_secret("refused-ray-auth", "ray")
    kube.core.patch_namespaced_secret(
        "refused-ray-auth", "ray", {"data": {"token": base64.b64encode(b"f" * 64).decode()}}
    )
    os.kill(monitor_pid(kube, "refused", "ray"), signal.SIGKILL)
    status = wait_for(
        lambda: (lambda s: s if "AuthenticationError" in s.get("message", "") else None)(kube.status("refused", "ray")),
        timeout=90,
        message="the head's refusal in status.message",
        state=lambda: kube.status("refused", "ray"),
    )
    assert status["phase"] == "AutoscalingExceptionRecovery"
    assert re.match(
        r"the autoscaler exited with code 1: AuthenticationError: .*InvalidAuthToken: Authentication token is "
        r"missing or incorrect",
        status["message"],
    ), status["message"]
    events = kube.core.list_namespaced_event(
        "ray", field_selector="involvedObject.name=refused,reason=AutoscalerFailed"
    ).items
    assert any("InvalidAuthToken" in e.message for e in events), [e.message for e in events]
    kube.core.patch_namespaced_secret("refused-ray-auth", "ray", {"data": secret.data})
    status = wait_for(
        lambda: (lambda s: s if s.get("phase") == "Running" and s["autoscalerRetries"] >= 2 else None)(
            kube.status("refused", "ray")
        ),
        timeout=120,
        message="Running again with the right token",
        state=lambda: kube.status("refused", "ray"),
    )
    assert status["message"] == "" and kube.head("refused", "ray").metadata.uid == head_uid
    delete_and_wait_gone(kube, "refused", "ray")


# What the head of an outdated Ray image writes into its GCS, written over the real head's: a Ray before tokens.
CLAIM_RAY_2_51 = """
import json, sys
from ray._raylet import GcsClient
client = GcsClient(address=sys.argv[1])
metadata = json.loads(client.internal_kv_get(b"CLUSTER_METADATA", b"cluster"))
older = json.dumps({**metadata, "ray_version": "2.51.0"}).encode()
client.internal_kv_put(b"CLUSTER_METADATA", older, True, b"cluster")
"""


def test_a_cluster_whose_ray_has_no_token_authentication_errors_and_its_pods_go(kube):
    kube.create(raycluster("old"))
    kube.wait_phase("old", "ray", "Running")
    token = kube.ray_token("old", "ray")
    subprocess.run(
        [sys.executable, "-c", CLAIM_RAY_2_51, f"{kube.head('old', 'ray').status.pod_ip}:6379"],
        check=True,
        timeout=60,
        env={**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token},
    )
    os.kill(monitor_pid(kube, "old", "ray"), signal.SIGKILL)  # its next autoscaler reads the version again
    kube.wait_phase("old", "ray", "Error", timeout=120)
    message = kube.status("old", "ray")["message"]
    assert "Ray 2.51.0, which has no token authentication (first in Ray 2.52)" in message
    assert "Use an image with Ray 2.52 or newer, or set rayAuthentication: disabled" in message
    wait_for(lambda: not kube.pods("ray", "ray-cluster-name=old"), timeout=60, message="its open head removed")
    retries = kube.status("old", "ray")["autoscalerRetries"]
    holds_for(  # no crash loop: for five autoscaler intervals, no pod and no restart counted
        lambda: (
            not kube.pods("ray", "ray-cluster-name=old")
            and kube.status("old", "ray")["autoscalerRetries"] == retries
            and kube.status("old", "ray")["phase"] == "Error"
        ),
        seconds=5,
        message="in Error with no pod and no restart counted",
    )
    kube.patch("old", "ray", {"spec": {"rayAuthentication": "disabled"}})  # one of the two ways out
    kube.wait_phase("old", "ray", "Running", timeout=120)
    delete_and_wait_gone(kube, "old", "ray")
