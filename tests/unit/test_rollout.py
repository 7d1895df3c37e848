"""A changed podType's workers replaced without losing work or going past maxWorkers: the decision of one round,
then Ray's own StandardAutoscaler (as DrainingAutoscaler) driving our provider against the API server, the test
playing the kubelet (deleted pods stay, draining, for a few rounds) and the GCS (every running pod joins)."""

import copy

import kubernetes
import pytest
from ray.autoscaler._private.load_metrics import LoadMetrics

from autoscaler_bridge.draining_autoscaler import DrainingAutoscaler
from autoscaler_bridge.kube_client import KubeCalls
from autoscaler_bridge.names import JOINED_TAG
from autoscaler_bridge.rollout import REPLACEMENT, Rollout, Step, rollout_step
from ray_operator.head import create_head_pod
from tests.harness.waiting import wait_for
from tests.unit.test_autoscaler_with_provider import DrainingGcs, workers
from tests.unit.test_node_provider import cluster, create_head, listed, set_phase  # noqa: F401 - fixtures


@pytest.mark.parametrize(
    "rollout, step",
    [
        # Room for two more: both replacements are launched, nothing goes yet.
        (Rollout(held=("o1", "o2"), spare=(), starting=0, deleting=0, room=2), Step((), 2)),
        # Room for one: one replacement at a time.
        (Rollout(held=("o1", "o2"), spare=(), starting=0, deleting=0, room=1), Step((), 1)),
        # A replacement starting counts as launched.
        (Rollout(held=("o1", "o2"), spare=(), starting=1, deleting=0, room=1), Step((), 0)),
        (Rollout(held=("o1", "o2"), spare=(), starting=1, deleting=0, room=2), Step((), 1)),
        # A new-template worker runs Ray: an outdated one goes for it, the other waits for its own.
        (Rollout(held=("o1", "o2"), spare=("n1",), starting=1, deleting=0, room=0), Step((("o1", "n1"),), 0)),
        (Rollout(held=("o2",), spare=("n2",), starting=0, deleting=1, room=0), Step((("o2", "n2"),), 0)),
        # No room: one outdated worker goes while nothing of the podType starts or drains.
        (Rollout(held=("o1", "o2"), spare=(), starting=0, deleting=0, room=0), Step((("o1", None),), 0)),
        (Rollout(held=("o2",), spare=(), starting=0, deleting=1, room=0), Step((), 0)),
        (Rollout(held=("o2",), spare=(), starting=1, deleting=0, room=-1), Step((), 0)),
        # Its drain over, room again: the replacement is launched.
        (Rollout(held=("o2",), spare=(), starting=0, deleting=0, room=1), Step((), 1)),
        # Nothing held: nothing to do (the podType's room still bounds Ray's launches).
        (Rollout(held=(), spare=("n1",), starting=0, deleting=1, room=0), Step((), 0)),
    ],
)
def test_outdated_workers_go_only_once_new_template_ones_stand_in_or_there_is_no_room(rollout, step):
    assert rollout_step(rollout) == step


class Kubelet:
    """Kubelet and GCS at once: pods are bound and run with an IP, each busy (its work must not be lost) and
    reported to the autoscaler's LoadMetrics; a deleted pod drains for DRAIN_ROUNDS rounds, then goes."""

    DRAIN_ROUNDS = 3

    def __init__(self, kube, load):
        self.kube, self.core = kube, kubernetes.client.CoreV1Api(kube)
        self.load = load
        self.ips: dict[str, str] = {}
        self.draining: dict[str, int] = {}

    def tick(self):
        running = []
        for pod in self.core.list_namespaced_pod("ray", label_selector="ray-cluster-name=demo").items:
            name = pod.metadata.name
            if pod.metadata.deletion_timestamp:
                self.draining[name] = self.draining.get(name, 0) + 1
                if self.draining[name] > self.DRAIN_ROUNDS:
                    self.core.delete_namespaced_pod(name, "ray", grace_period_seconds=0)
                continue
            if name not in self.ips:
                self.ips[name] = f"127.0.0.{len(self.ips) + 1}"
                binding = {"metadata": {"name": name}, "target": {"kind": "Node", "name": "n1"}}
                self.core.create_namespaced_pod_binding(name, "ray", binding, _preload_content=False)
                set_phase(self.kube, name, "Running", self.ips[name])
            running.append(name)
        self.load.prune_active_ips([self.ips[n] for n in running])
        for name in running:
            node_id = name.encode().ljust(28, b"0")[:28]
            self.load.update(self.ips[name], node_id, {"CPU": 1.0}, {"CPU": 0.0}, node_idle_duration_s=0)


def replace_workers(
    kube, config: dict, pod_service, max_workers: int
) -> tuple[set[str], list[list[tuple[str, bool, bool]]]]:
    """Two busy workers (minWorkers 2) whose template changes; the workers (name, outdated, being deleted) after each
    autoscaler round until every worker has the new template. Returns the outdated names and that history."""
    config = copy.deepcopy(config)
    config["provider"] = pod_service.provider_config(config["provider"])
    worker_type = config["available_node_types"]["rayWorkerType"]
    worker_type.update(min_workers=2, max_workers=max_workers)
    config["max_workers"] = 10
    create_head_pod(KubeCalls(kube), config, pod_service.cache)
    load = LoadMetrics()
    kubelet = Kubelet(kube, load)
    gcs = DrainingGcs()
    autoscaler = DrainingAutoscaler(lambda: copy.deepcopy(config), load, gcs, update_interval_s=0)

    def round_() -> list:
        kubelet.tick()
        autoscaler.update()
        return workers(kube)

    wait_for(lambda: [p.status.phase for p in round_()] == ["Running", "Running"], timeout=60, message="two workers")
    old = {p.metadata.name for p in workers(kube)}
    worker_type["node_config"].setdefault("metadata", {}).setdefault("labels", {})["template"] = "v2"
    history = []

    def replaced() -> bool:
        now = round_()
        history.append([(p.metadata.name, p.metadata.name in old, bool(p.metadata.deletion_timestamp)) for p in now])
        return len(now) == 2 and not {p.metadata.name for p in now} & old and not any(d for _, _, d in history[-1])

    wait_for(replaced, timeout=120, message="every worker of the new template")
    assert gcs.drained == []  # no Ray node stopped outright: each drained in its pod
    return old, history


def test_with_room_new_template_workers_run_before_an_outdated_one_goes(cluster, kube, pod_service):
    old, history = replace_workers(kube, cluster[1], pod_service, max_workers=4)
    for seen in history:
        assert len(seen) <= 4
        new_running = sum(not outdated and not deleting for _, outdated, deleting in seen)
        old_going = sum(outdated and deleting for _, outdated, deleting in seen)
        gone = len(old) - sum(outdated for _, outdated, _ in seen)
        assert old_going + gone <= new_running, seen  # each outdated worker released had its replacement running
    assert all(p.metadata.labels.get(REPLACEMENT) == "true" for p in workers(kube))


def test_without_room_one_outdated_worker_drains_at_a_time_and_maxworkers_holds(cluster, kube, pod_service):
    _, history = replace_workers(kube, cluster[1], pod_service, max_workers=2)
    for seen in history:
        assert len(seen) <= 2, seen  # draining ones included
        assert sum(not deleting for _, _, deleting in seen) >= 1, seen  # one fewer at most, for a drain
    assert any(sum(deleting for _, _, deleting in seen) == 1 for seen in history)


def test_a_worker_is_labelled_joined_once_its_ray_node_has_joined(cluster, kube, pod_service):
    """The operator's bound on Ray pods starting counts a worker until its autoscaler labels it: not while it only
    runs, once its raylet has reported to the GCS."""
    config = copy.deepcopy(cluster[1])
    config["provider"] = pod_service.provider_config(config["provider"])
    config["available_node_types"]["rayWorkerType"].update(min_workers=1, max_workers=1)
    create_head(kube, config, pod_service.cache)
    load = LoadMetrics()
    autoscaler = DrainingAutoscaler(lambda: copy.deepcopy(config), load, DrainingGcs(), update_interval_s=0)
    wait_for(lambda: (autoscaler.update(), workers(kube))[1], timeout=60, message="the worker launched")
    [worker] = workers(kube)
    set_phase(kube, worker.metadata.name, "Running", "127.0.0.9")
    wait_for(
        lambda: listed(autoscaler.provider, lambda p: p.is_running(worker.metadata.name)),
        message="the worker running, as listed",
    )
    autoscaler.update()
    assert JOINED_TAG not in workers(kube)[0].metadata.labels
    load.update("127.0.0.9", b"w".ljust(28, b"0"), {"CPU": 1.0}, {"CPU": 1.0}, node_idle_duration_s=0)  # it joins
    autoscaler.update()
    assert workers(kube)[0].metadata.labels[JOINED_TAG] == "true"
