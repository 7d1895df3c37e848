"""One cluster's controller against the project's API server, without Ray: what it creates and what it leaves be."""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys

import kubernetes
import pytest
import yaml

from autoscaler_bridge import start_gate
from autoscaler_bridge.kube_client import KubeCalls
from autoscaler_bridge.names import DRAIN_ANNOTATION
from ray_operator.cluster_controller import ClusterController
from ray_operator.cluster_objects import ClusterObjects
from ray_operator.helm_values import raycluster_from_values
from ray_operator.membership import Membership
from ray_operator.settings import Settings
from ray_operator.shards import chosen
from tests.harness.api import apply_crd, create_raycluster
from tests.harness.files import ROOT, load_yaml
from tests.harness.waiting import wait_for


@pytest.fixture
def objects(kube):
    """The operator's watches of RayClusters, Ray pods and Services, as the manager starts them."""
    watched = ClusterObjects(
        KubeCalls(kube), None, lambda namespace, name: None, lambda body: None, "test-operator"
    ).start()
    yield watched
    watched.stop()


@pytest.fixture
def membership(kube):
    """This operator's Lease, as the manager starts it."""
    member = Membership(KubeCalls(kube), "default", "test-operator").start()
    yield member
    member.stop()


def controller_for(kube, objects, membership, tmp_path, name: str) -> tuple[ClusterController, dict]:
    body = create_raycluster(kube, raycluster_from_values(load_yaml(ROOT / "values/cpu-only.yaml"), name, "ray"))
    return ClusterController(body, Settings(work_dir=tmp_path), KubeCalls(kube), objects, membership), body


def head_pods(core) -> list[str]:
    return [p.metadata.name for p in core.list_namespaced_pod("ray", label_selector="ray-node-type=head").items]


def test_nothing_is_made_for_a_raycluster_deleted_before_the_watch_says_so(kube, core, objects, membership, tmp_path):
    """Its pods, head Service and budget, which the garbage collector deletes with it, are not made again, and the
    controller says it found the RayCluster deleted."""
    apply_crd(kube)
    policy = kubernetes.client.PolicyV1Api(kube)

    def made() -> list[str]:
        services = [s.metadata.name for s in core.list_namespaced_service("ray").items]
        budgets = [b.metadata.name for b in policy.list_namespaced_pod_disruption_budget("ray").items]
        return head_pods(core) + services + budgets

    controller, _ = controller_for(kube, objects, membership, tmp_path, "doomed")

    def seen_gone() -> None:
        wait_for(
            lambda: (
                not objects.pods("ray", "doomed")
                and objects.head_service("ray", "doomed") is None
                and objects.head_budget("ray", "doomed") is None
            ),
            message="the operator's watches seeing the pods, Service and budget go",
        )

    controller.reconcile()
    assert len(made()) == 3  # the controller makes a head, its Service and budget for a RayCluster that exists
    core.delete_collection_namespaced_pod("ray")
    core.delete_namespaced_service("doomed-ray-head", "ray")
    policy.delete_namespaced_pod_disruption_budget("doomed-ray-head", "ray")
    seen_gone()
    controller.reconcile()
    assert len(made()) == 3 and not controller.found_deleted  # made again while the RayCluster exists
    kubernetes.client.CustomObjectsApi(kube).delete_namespaced_custom_object(
        "cluster.ray.io", "v1", "ray", "rayclusters", "doomed"
    )
    seen_gone()  # the garbage collector's deletions
    controller.reconcile()  # still holding the body the watch last delivered
    assert made() == []
    assert controller.found_deleted  # the manager forgets the cluster without waiting for the watch


def test_a_head_pod_refused_holds_no_place_from_other_clusters_heads(kube, core, objects, membership, tmp_path):
    """A RayCluster whose head pod cannot be made (here the client refuses it: its image is no string) is in Error,
    saying why (once as an Event), and retried; it claims a place to start its head each time
    (autoscaler_bridge.start_gate), and each claim is withdrawn when the create fails, so the places stay free for
    the heads of other clusters."""
    apply_crd(kube)
    settings = Settings(work_dir=tmp_path)
    refused = raycluster_from_values(load_yaml(ROOT / "values/cpu-only.yaml"), "refused", "ray")
    for pod_type in refused["spec"]["podTypes"]:
        pod_type["podConfig"]["spec"]["containers"][0]["image"] = 0
    body = create_raycluster(kube, refused)
    controller = ClusterController(body, settings, KubeCalls(kube), objects, membership)
    for _ in range(settings.max_starting_pods):
        assert controller.reconcile_once() is None  # failed, written to status
    assert start_gate.claimed(settings.start_gate_path) == 0
    status = kubernetes.client.CustomObjectsApi(kube).get_namespaced_custom_object(
        "cluster.ray.io", "v1", "ray", "rayclusters", "refused"
    )["status"]
    assert (status["phase"], status["message"]) == (
        "Error",
        "the head pod of podType rayHeadType is refused: spec.containers[0].image: Input should be a valid string",
    )
    [event] = core.list_namespaced_event(
        "ray", field_selector="involvedObject.name=refused,reason=HeadPodRefused"
    ).items
    assert event.message == status["message"] and event.type == "Warning"
    other, _ = controller_for(kube, objects, membership, tmp_path, "other")
    other.reconcile()
    [head] = head_pods(core)
    assert head.startswith("other-")


@pytest.mark.parametrize("orphaning", [False, True])
def test_a_deleted_clusters_pods_go_at_once_workers_with_the_time_to_stop_ray_not_to_drain(
    kube, core, objects, membership, tmp_path, orphaning
):
    """The replica that ran a deleted cluster deletes at once what the garbage collector deletes with it (which may
    take it up to ~30 s, Ray running on): the pods the RayCluster owns, its head with its own grace. Its head goes,
    so nothing can drain: a worker that ignores SIGTERM (deleted as it started, before its shell trapped it) would
    hold its pod for the whole drain, so workers made to drain get 15 s of grace, shortening the grace of those the
    garbage collector deleted first. A pod the RayCluster does not own stays; deleted orphaning its pods
    (propagationPolicy Orphan), the cluster leaves every pod be."""
    apply_crd(kube)
    controller, body = controller_for(kube, objects, membership, tmp_path, "gone")
    controller.reconcile()
    assert controller.runs_here
    owner = {"apiVersion": "cluster.ray.io/v1", "kind": "RayCluster", "name": "gone", "uid": body["metadata"]["uid"]}

    def worker(name: str, drain: str | None, owned: bool = True) -> None:
        annotations = {DRAIN_ANNOTATION: drain} if drain else {}
        metadata = {
            "name": name,
            "labels": {"ray-cluster-name": "gone", "ray-node-type": "worker"},
            "annotations": annotations,
            "ownerReferences": [owner] if owned else [],
        }
        spec = {"nodeName": "n1", "terminationGracePeriodSeconds": 135, "containers": [{"name": "r", "image": "i"}]}
        core.create_namespaced_pod("ray", {"metadata": metadata, "spec": spec})

    worker("live", "120")
    worker("collected", "120")
    worker("no-drain", None)
    worker("not-owned", "120", owned=False)
    core.delete_namespaced_pod("collected", "ray")  # the garbage collector's deletion, with the pod's own grace
    wait_for(
        lambda: len(objects.pods("ray", "gone", deleted=True)) == 1 and len(objects.pods("ray", "gone")) == 4,
        message="the operator's watch seeing the head and the workers",
    )
    [head] = head_pods(core)
    if orphaning:
        controller.update({**body, "metadata": {**body["metadata"], "finalizers": ["orphan"]}})
    controller.stop(forget=True)
    graces = {p.metadata.name: p.metadata.deletion_grace_period_seconds for p in core.list_namespaced_pod("ray").items}
    assert {name: graces.get(name, "gone") for name in (head, "live", "collected", "no-drain", "not-owned")} == {
        head: None if orphaning else "gone",  # placed on no node: deleted at once
        "live": None if orphaning else 15,
        "collected": 135 if orphaning else 15,
        "no-drain": None if orphaning else 135,
        "not-owned": None,
    }


def test_a_cluster_whose_namespace_is_being_deleted_is_let_go_quietly(
    kube, core, objects, membership, tmp_path, caplog, monkeypatch
):
    """Its creates come back 403 NamespaceTerminating: no Error, no traceback, nothing more created. (Found before
    the namespace controller deleted the RayCluster itself: then the controller finds it deleted and makes nothing.)"""
    caplog.set_level(logging.INFO)
    apply_crd(kube)
    controller, _ = controller_for(kube, objects, membership, tmp_path, "doomed")
    monkeypatch.setattr(controller, "_being_deleted", lambda body: False)
    controller.update(
        kubernetes.client.CustomObjectsApi(kube).patch_namespaced_custom_object_status(
            "cluster.ray.io", "v1", "ray", "rayclusters", "doomed", {"status": {"operator": membership.owner_record}}
        )
    )
    core.create_namespaced_config_map("ray", {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
    core.delete_namespace("ray")  # Terminating while the held ConfigMap stays; its RayCluster is deleted
    wait_for(
        lambda: (
            not kubernetes.client.CustomObjectsApi(kube).list_namespaced_custom_object(
                "cluster.ray.io", "v1", "ray", "rayclusters"
            )["items"]
        ),
        message="the RayCluster deleted with its namespace",
    )
    controller.reconcile_once()  # still holding the RayCluster the watch last delivered
    assert head_pods(core) == [] and core.list_namespaced_service("ray").items == []
    assert "its namespace is being deleted" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_operator_writes_for_the_autoscaler_what_render_prints(kube, objects, membership, tmp_path):
    apply_crd(kube)
    body = create_raycluster(kube, raycluster_from_values(load_yaml(ROOT / "values/cpu-only.yaml"), "same", "ray"))
    controller = ClusterController(
        body,
        Settings(work_dir=tmp_path, max_pending_pods=3, pending_timeout_seconds=42.0),
        KubeCalls(kube),
        objects,
        membership,
    )
    controller.reconcile()
    manifest = tmp_path / "same.yaml"
    manifest.write_text(yaml.safe_dump(body))
    rendered = subprocess.run(
        [
            sys.executable,
            "-m",
            "ray_operator",
            "render",
            str(manifest),
            "--max-pending-pods",
            "3",
            "--pending-timeout",
            "42",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    written = json.loads(controller.config_path.read_text())
    # The additions: where the node provider reads this operator's Lease deadline, claims places to start pods and
    # asks this operator for its pods.
    assert written["provider"].pop("fence_file") == str(tmp_path / "lease-valid-until")
    assert written["provider"].pop("start_gate_file") == str(tmp_path / "ray-pods-starting")
    assert written["provider"].pop("pod_service") == str(tmp_path / "pods.sock")
    assert yaml.safe_load(rendered) == written and written["provider"]["max_pending_pods"] == 3


def test_a_reconciliation_with_nothing_to_change_makes_no_request(kube, objects, membership, tmp_path, api_server):
    """Pods and the head Service come from the operator's watches, the config from memory: a resync of a cluster
    that waits (here for its head pod, which no kubelet runs) costs the API server nothing."""
    apply_crd(kube)
    controller, _ = controller_for(kube, objects, membership, tmp_path, "steady")
    controller.reconcile()  # the head Service, the token Secret, the head pod, the status
    wait_for(lambda: objects.pods("ray", "steady") and objects.head_service("ray", "steady"), message="both watched")
    controller.reconcile()
    before = len(api_server.request_log)
    for _ in range(5):
        controller.reconcile()
    assert list(api_server.request_log)[before:] == []


def test_only_a_new_spec_another_owner_or_another_raycluster_of_the_name_is_a_change(
    kube, objects, membership, tmp_path
):
    """The operator's own status writes come back through the watch: they must not wake the cluster again; a
    hand-over to this operator (status.operator) must."""
    apply_crd(kube)
    controller, body = controller_for(kube, objects, membership, tmp_path, "echo")
    with_status = {**body, "metadata": {**body["metadata"], "resourceVersion": "999"}, "status": {"phase": "Updating"}}
    assert not controller.update(with_status)
    assert controller.update({**with_status, "metadata": {**with_status["metadata"], "generation": 2}})
    assert controller.update(
        {**with_status, "metadata": {**with_status["metadata"], "generation": 2, "uid": "another"}}
    )
    handed = {
        **with_status,
        "metadata": {**with_status["metadata"], "generation": 2, "uid": "another"},
        "status": {"phase": "Running", "operator": membership.owner_record},
    }
    assert controller.update(handed)


def test_replicas_run_the_clusters_chosen_for_them_and_hand_them_over_as_replicas_come_and_go(kube, objects, tmp_path):
    """Three replicas' controllers of six RayClusters (no Ray: heads never run): each cluster is claimed by the
    replica rendezvous hashing chooses, a joining replica is handed its share by their owners, and a leaving one's
    clusters are taken over by the rest, each move an Event."""
    apply_crd(kube)
    custom = kubernetes.client.CustomObjectsApi(kube)

    def replica(identity: str) -> Membership:
        return Membership(KubeCalls(kube), "default", identity, retry_seconds=3600).start()

    replicas = {identity: replica(identity) for identity in ("op-1", "op-2")}
    bodies = [
        create_raycluster(kube, raycluster_from_values(load_yaml(ROOT / "values/cpu-only.yaml"), f"c{i}", "ray"))
        for i in range(6)
    ]
    controllers: dict[tuple[str, str], ClusterController] = {}

    def reconcile_all() -> dict[str, str]:
        """Every replica's controller of every cluster reconciled once, as the manager would on a change of members;
        the owner of each cluster afterwards."""
        for member in replicas.values():
            member.refresh()
        for body in bodies:
            for identity, member in replicas.items():
                name = body["metadata"]["name"]
                controller = controllers.get((identity, name))
                if controller is None:
                    controller = controllers[identity, name] = ClusterController(
                        body,
                        Settings(work_dir=tmp_path / identity, max_starting_pods=0),  # no scheduler places heads
                        KubeCalls(kube),
                        objects,
                        member,
                    )
                controller.update(
                    custom.get_namespaced_custom_object("cluster.ray.io", "v1", "ray", "rayclusters", name)
                )
                controller.reconcile()
        return {
            body["metadata"]["name"]: custom.get_namespaced_custom_object(
                "cluster.ray.io", "v1", "ray", "rayclusters", body["metadata"]["name"]
            )["status"]["operator"]["identity"]
            for body in bodies
        }

    def chosen_among(*members: str) -> dict[str, str | None]:
        return {body["metadata"]["name"]: chosen(body["metadata"]["uid"], members) for body in bodies}

    def events(reason: str) -> int:
        return sum(
            1 for e in kubernetes.client.CoreV1Api(kube).list_namespaced_event("ray").items if e.reason == reason
        )

    wait_for(lambda: replicas["op-1"].refresh() == replicas["op-2"].refresh() == {"op-1", "op-2"}, message="2 members")
    assert reconcile_all() == chosen_among("op-1", "op-2")
    assert len(head_pods(kubernetes.client.CoreV1Api(kube))) == 6  # one head each, by its owner alone

    # The third replica: named so that hashing gives it a share of these six uids (the API server draws them; one
    # name in ~11 gets none), so that the hand-over is seen each run.
    third = next(
        name for name in (f"op-{n}" for n in itertools.count(3)) if name in chosen_among("op-1", "op-2", name).values()
    )
    replicas[third] = replica(third)
    wait_for(lambda: all(m.refresh() == {"op-1", "op-2", third} for m in replicas.values()), message="3 members")
    owners = reconcile_all()
    assert owners == chosen_among("op-1", "op-2", third)
    moved = sum(owner == third for owner in owners.values())
    assert moved and events("HandedOver") == moved  # only the third's share moved, each by an Event

    for name, owner in owners.items():  # what the third counted while it ran them
        if owner == third:
            custom.patch_namespaced_custom_object_status(
                "cluster.ray.io", "v1", "ray", "rayclusters", name, {"status": {"autoscalerRetries": 3}}
            )
    replicas.pop(third).stop()  # its Lease is deleted: the others take its clusters at once
    wait_for(lambda: all(m.refresh() == {"op-1", "op-2"} for m in replicas.values()), message="the third gone")
    taken = reconcile_all()
    assert taken == chosen_among("op-1", "op-2")
    assert events("TakenOver") == moved
    for name, owner in owners.items():  # the new owner starts from the status the old one wrote
        if owner == third:
            assert controllers[taken[name], name].status.current["autoscalerRetries"] == 3
    assert len(head_pods(kubernetes.client.CoreV1Api(kube))) == 6  # no pod made or deleted by a move
    for member in replicas.values():
        member.stop()
