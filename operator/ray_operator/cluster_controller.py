"""Where one RayCluster is reconciled: observed, its next step decided and carried out, its status written.

Each RayCluster has a controller, reconciled by the operator's worker pool
(ray_operator.work_queue) on every change of the RayCluster, of its pods or of
its head Service (seen through the operator's watches: a reconciliation makes
no API request unless something must change), on its autoscaler's exit, when
what only time shows is due (a backoff's end, the head's GCS starting to
answer, the autoscaler's rounds and health: decide.recheck_seconds), and every
`resync_seconds` (minutes) for what the watches missed. Each reconciliation is
four steps:

- observe: a frozen Observation (ray_operator.observation) of the spec, the
  cluster's pods and head Service, the head's GCS, the autoscaler process, and
  what the controller remembers (failures in a row, backoff, the head it runs on);
- decide: the one next step, a pure function (ray_operator.decide);
- act: carry it out here (create the head, restart the cluster, start or stop
  the autoscaler, post Events);
- status: computed by a pure function (ray_operator.cluster_status) and written once.

The autoscaler re-reads the config file every round: worker podType changes
replace those workers through its launch-config check, min/max and speed
changes only reconfigure it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import shutil
import socket
import threading
import time
from datetime import datetime, timezone
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException
from ray.autoscaler.tags import TAG_RAY_LAUNCH_CONFIG

from autoscaler_bridge import ray_auth, start_gate
from autoscaler_bridge.cluster_config import autoscaler_config, head_tags, outdated
from autoscaler_bridge.cluster_pods import CachedPods
from autoscaler_bridge.kube_client import KubeCalls, namespace_terminating
from autoscaler_bridge.names import API_GROUP, API_VERSION, PLURAL, head_service_name
from autoscaler_bridge.ray_pod import DRAIN_MARGIN_SECONDS
from autoscaler_bridge.ray_start import gcs_port
from autoscaler_bridge.validation import InvalidRayCluster
from autoscaler_bridge.watch_cache import NotSynced
from ray_operator.auth_secret import TokenSecretError, ensure_token, read_referenced_token, read_token
from ray_operator.autoscaler_view import autoscaler_status, decision_event
from ray_operator.cluster_objects import ClusterObjects
from ray_operator.cluster_status import DEADLINE_EXCEEDED, drain_events, status_for
from ray_operator.decide import (
    AUTOSCALING,
    FAILURES,
    NOT_MINE,
    Action,
    Step,
    decide,
    deleted_with,
    failure_reason,
    recheck_seconds,
    waiting_for_head_slot,
)
from ray_operator.head import HeadPodRefused, create_head_pod, create_head_service, keep_head_budget
from ray_operator.logs import cluster_logger
from ray_operator.metrics import AUTOSCALER_RESTARTS, RECONCILE_SECONDS
from ray_operator.monitor_process import MonitorProcess, MonitorSpec
from ray_operator.membership import Membership
from ray_operator.observation import Memory, MonitorState, Observation, drain_seconds, is_head, pod_phase
from ray_operator.settings import Settings
from ray_operator.shards import MINE, ORPHANED, chosen, ownership
from ray_operator.status import ERROR, RUNNING, StatusWriter

log = logging.getLogger(__name__)
CREATES_HEAD = (Action.HEAD_GONE, Action.CREATE_HEAD)  # the steps that make a head pod
# Failures that are the user's to fix (a Secret, the spec), with their Event's reason: logged without a traceback.
THEIRS_TO_FIX: dict[type[Exception], str] = {TokenSecretError: "InvalidTokenSecret", HeadPodRefused: "HeadPodRefused"}


def _spec_version(body: dict[str, Any]) -> tuple[Any, Any]:
    """What changes with the spec of a RayCluster and not with its status (a status subresource's writes leave the
    generation as it is)."""
    return body["metadata"].get("uid"), body["metadata"].get("generation")


def _owner(body: dict[str, Any]) -> dict[str, Any]:
    """The RayCluster's status.operator: {identity, lease} of the operator that runs it; empty if none does."""
    owner = (body.get("status") or {}).get("operator")
    return owner if isinstance(owner, dict) else {}


def gcs_answers(ip: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


class ClusterController:
    def __init__(
        self,
        body: dict[str, Any],
        settings: Settings,
        calls: KubeCalls,
        objects: ClusterObjects,
        membership: Membership,
    ) -> None:
        self.membership = membership
        self.reported_owner: str | None = None  # the other operator an Event last said runs the cluster
        self.name = body["metadata"]["name"]
        self.namespace = body["metadata"]["namespace"]
        self.settings, self.calls, self.objects = settings, calls, objects
        self.log = cluster_logger(log, self.name, self.namespace)
        self.status = StatusWriter(calls, self.name, self.namespace)
        # Made with the first config: only a valid RayCluster has one, and its names fit in a file name.
        self.dir = settings.work_dir / f"{self.namespace}.{self.name}"
        self.config_path = self.dir / "autoscaler.json"
        self.monitor: MonitorProcess | None = None
        self.monitor_started = 0.0
        self.wait_at_round = (0.0, 0.0)  # (its last round, the autoscaler's CPU wait then): how starved it is since
        self.config_written = 0.0
        self.failures_in_a_row = 0
        self.recovering = False
        self.failure = ""  # the last failure's reason, kept in status.message while recovering from it
        self.restart_not_before = 0.0
        self.head_uid: str | None = None
        self.autoscaler_written_at = 0.0  # when status.autoscaler was last written (monotonic)
        self.unsupported: tuple[int, str] | None = None  # (generation, why) the cluster's Ray cannot be autoscaled
        self.runs_here = False  # whether the last observation found the cluster this replica's
        self.drain_said: frozenset[tuple[str, str]] = frozenset()  # (Event reason, worker) of drain Events posted
        self._found_deleted: str | None = None  # the uid of a RayCluster the API server said is gone or being deleted
        self._body = body
        if self.owned:  # another's status is adopted once the cluster becomes this replica's (observe)
            self.status.adopt(body.get("status"))
        self._derived_from: tuple[Any, list[Any], dict[str, Any] | None] | None = None
        self._config_text: str | None = None  # the autoscaler config file's content, as last written
        self._stopping = threading.Event()
        self._reconciling = threading.Lock()

    # Lifecycle, driven by the manager.
    def update(self, body: dict[str, Any]) -> bool:
        """The RayCluster as the watch last delivered it; whether it is another spec (or another RayCluster of the
        same name) or another owner than before, rather than the same with another status."""
        before, self._body = self._body, body
        return _spec_version(before) != _spec_version(body) or _owner(before) != _owner(body)

    @property
    def owned(self) -> bool:
        """Whether this operator runs the cluster (its status.operator, as last seen or claimed)."""
        return _owner(self._body).get("identity") == self.membership.identity

    @property
    def stopped(self) -> bool:
        return self._stopping.is_set()

    @property
    def found_deleted(self) -> bool:
        """Whether the API server said the RayCluster this controller holds is gone or being deleted, which the
        watch may say only later (a lagging or cut watch): the manager forgets the cluster at once."""
        return self._found_deleted is not None and self._found_deleted == self._body["metadata"].get("uid")

    def fence(self) -> None:
        """Stop the autoscaler, uncounted, once a reconciliation under way has ended: this operator's Lease lapsed,
        and the cluster may have moved meanwhile (the next reconciliation finds out)."""
        if self._reconciling.acquire(timeout=30):
            try:
                self._stop_monitor()
            finally:
                self._reconciling.release()
        else:
            self._stop_monitor()

    def stop(self, forget: bool = False) -> None:
        """Stop reconciling (a reconciliation under way ends first) and stop the autoscaler; pods are left as they
        are. `forget` (the RayCluster is gone or being deleted): its files (autoscaler config, heartbeat, view,
        decisions) go too, and if this replica ran it, it deletes the pods the garbage collector is to delete
        (decide.deleted_with), workers with the time to stop Ray, not to drain (_delete_pods)."""
        self._stopping.set()
        if self._reconciling.acquire(timeout=30):
            self._reconciling.release()
        self._stop_monitor()
        if forget:
            shutil.rmtree(self.dir, ignore_errors=True)
            if self.runs_here:
                try:
                    pods = [p for gone in (False, True) for p in self.objects.pods(self.namespace, self.name, gone)]
                    self._delete_pods(deleted_with(self._body, pods, DRAIN_MARGIN_SECONDS))
                except Exception as error:  # noqa: BLE001 - the garbage collector deletes them anyway
                    self.log.warning("deleting the deleted cluster's pods failed: %s", error)

    def reconcile_once(self) -> float | None:
        """One reconciliation: the seconds until the cluster must be looked at again though nothing changes
        (math.inf: on a change alone), or None if it did not get through. A failure is logged and written to
        status, and never ends the next one. In a namespace being deleted the cluster is let go quietly: nothing
        more is made for it, nothing is an error."""
        with self._reconciling:
            return math.inf if self._stopping.is_set() else self._reconcile_logged()

    def _reconcile_logged(self) -> float | None:
        try:
            with RECONCILE_SECONDS.time():
                recheck = self.reconcile()
            return math.inf if recheck is None else recheck
        except NotSynced as unknown:  # the operator's watches cannot say what exists: nothing is decided
            self.log.info("%s", unknown)
            return None
        except Exception as error:  # noqa: BLE001 - one cluster's failure must not end its reconciliation
            if namespace_terminating(error):
                self.log.info("its namespace is being deleted: nothing more is created for it")
                self._stopping.set()
                self._stop_monitor()
                return math.inf
            reason = next((r for kind, r in THEIRS_TO_FIX.items() if isinstance(error, kind)), None)
            if reason is not None:  # the user's Secret or spec: theirs to fix, no failure of the operator
                message = str(error)
                self.log.error("%s", message)
            else:
                message = f"unexpected failure: {error}"
                self.log.exception("reconciling failed")
            try:
                if reason is not None and self.status.current.get("message") != message:
                    self.status.event(self._body, reason, message, warning=True)
                self.status.write(phase=ERROR, message=message)
            except Exception:  # noqa: BLE001
                self.log.exception("writing the Error status failed")
            return None

    # Helpers.
    def _stop_monitor(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None

    def _derived(self, body: dict[str, Any]) -> tuple[list[Any], dict[str, Any] | None]:
        """The spec's problems and, when it has none, its autoscaler config: computed once per spec, not on every
        resync or status write."""
        version = _spec_version(body)
        if self._derived_from is None or self._derived_from[0] != version:
            settings = self.settings
            try:
                config = autoscaler_config(body, settings.max_pending_pods, settings.pending_timeout_seconds)
                derived: tuple[Any, list[Any], dict[str, Any] | None] = (version, [], config)
            except InvalidRayCluster as invalid:
                derived = (version, invalid.problems, None)
            self._derived_from = derived
        return self._derived_from[1], self._derived_from[2]

    def _write_config(self, config: dict[str, Any]) -> None:
        """The autoscaler's config file, with the files its node provider reads this operator's Lease deadline from,
        claims places for Ray pods to start from and asks this operator for its pods at."""
        settings = self.settings
        files = {
            "fence_file": str(settings.fence_path),
            "start_gate_file": str(settings.start_gate_path),
            "pod_service": str(settings.pod_service_path),
        }
        fenced = {**config, "provider": {**config["provider"], **files}}
        text = json.dumps(fenced, sort_keys=True)
        if self._config_text is None and self.config_path.exists():
            self._config_text = self.config_path.read_text()
        if self._config_text == text:
            return
        partial = self.config_path.with_suffix(".tmp")
        self.dir.mkdir(parents=True, exist_ok=True)
        partial.write_text(text)
        os.replace(partial, self.config_path)
        self._config_text = text
        self.config_written = time.time()

    def _restart_cluster(self, reason: str, body: dict[str, Any]) -> None:
        """A new head, and workers with it: every pod of the cluster is deleted."""
        self._stop_monitor()
        self.head_uid = None
        self.log.info("restarting the cluster: %s", reason)
        self.status.event(body, "ClusterRestarting", reason)
        self._delete_pods(self.objects.pods(self.namespace, self.name))

    def _delete_pods(self, pods: list[dict[str, Any]]) -> None:
        """Delete pods whose head goes too (those being deleted already: again, with the shorter grace). Workers
        made to drain have no head to drain against: they get the time to stop Ray, not to drain (one deleted as it
        started, before its shell traps SIGTERM, ignores it and would otherwise wait out the whole drain)."""
        grace = {p["metadata"]["name"]: DRAIN_MARGIN_SECONDS for p in pods if drain_seconds(p) > 0}
        names = [p["metadata"]["name"] for p in pods]
        CachedPods(self.calls, self.objects.pod_cache, self.namespace, self.name).delete(names, grace)

    def _ensure_token(self, body: dict[str, Any], config: dict[str, Any]) -> None:
        """The cluster's token Secret, made before its first head pod (whose Ray reads it)."""
        _, made = ensure_token(self.calls, self.name, config["provider"])
        if made:
            name = ray_auth.secret_name(self.name)
            self.log.info("made the Secret %s with the cluster's Ray token", name)
            self.status.event(body, "TokenCreated", f"made the Secret {name} with the cluster's Ray token")

    def _being_deleted(self, body: dict[str, Any]) -> bool:
        """Whether the RayCluster is gone or being deleted, asked of the API server itself: when a RayCluster is
        deleted its pods, head Service and budget may vanish before the watch says so, and what is made again then
        would only be collected."""
        custom = kubernetes.client.CustomObjectsApi(self.calls.client)
        try:
            live: Any = self.calls(
                custom.get_namespaced_custom_object, API_GROUP, API_VERSION, self.namespace, PLURAL, self.name
            )
        except ApiException as error:
            if error.status == 404:
                return True
            raise
        return live["metadata"]["uid"] != body["metadata"]["uid"] or bool(live["metadata"].get("deletionTimestamp"))

    # The reconciliation: observe → decide → act → status.
    def reconcile(self) -> float | None:
        """One pass; returns when the cluster must be looked at again though nothing changes (None: on a change)."""
        observation = self.observe()
        step = self.act(observation, decide(observation, self.settings))
        if step.action is Action.CLAIM:  # the cluster is this operator's now: on with the pass the claim enables
            observation = self.observe()
            step = self.act(observation, decide(observation, self.settings))
        events = drain_events(observation, self.drain_said)
        for reason, _, message in events:
            self.status.event(self._body, reason, message, warning=reason == DEADLINE_EXCEEDED)
        deleted = {w["metadata"]["name"] for w in observation.deleted_workers}
        self.drain_said = frozenset(k for k in self.drain_said | {e[:2] for e in events} if k[1] in deleted)
        fields = status_for(observation, step, self.settings)
        if fields is not None and self.status.write(**fields) and "autoscaler" in fields:
            self.autoscaler_written_at = time.monotonic()
        return recheck_seconds(step, observation, self.settings)

    def autoscaler_exited(self) -> bool:
        """Whether the cluster's autoscaler process has ended and its controller has not yet seen it."""
        monitor = self.monitor
        return monitor is not None and monitor.ended()

    def observe(self) -> Observation:
        """The cluster as the operator's watches, the autoscaler process and the head's GCS show it now; the only
        request it may make is the GCS probe, once the head pod runs."""
        body = self._body
        generation = body["metadata"].get("generation")
        whose = self._ownership(body)
        if whose.ownership != MINE:
            self.runs_here = False
            return whose
        if not self.runs_here:  # claimed, or handed over: the status another replica wrote meanwhile is the start
            self.status.adopt(body.get("status"))
            self.runs_here = True
        problems, config = self._derived(body)
        status = self.status.current
        if self.unsupported and self.unsupported[0] != generation:
            self.unsupported = None  # a new spec (e.g. a newer image): tried afresh
        memory = Memory(
            phase=status.get("phase"),
            retries=int(status.get("autoscalerRetries") or 0),
            head_uid=self.head_uid,
            recovering=self.recovering,
            failure=self.failure,
            failures_in_a_row=self.failures_in_a_row,
            backoff_seconds=max(0.0, self.restart_not_before - time.monotonic()),
            unsupported=self.unsupported[1] if self.unsupported else None,
            autoscaler=status.get("autoscaler"),
            autoscaler_due=time.monotonic() - self.autoscaler_written_at >= self.settings.autoscaler_status_seconds,
        )
        if problems or memory.unsupported or config is None:
            return Observation(generation, problems=tuple(str(p) for p in problems), memory=memory)
        pods = self.objects.pods(self.namespace, self.name)
        head = next((p for p in pods if is_head(p)), None)
        workers = tuple(p for p in pods if not is_head(p))
        labels = (head or {}).get("metadata", {}).get("labels") or {}
        now = datetime.now(timezone.utc)
        observation = Observation(
            generation,
            config=config,
            service_exists=self.objects.head_service(self.namespace, self.name) is not None,
            budget_exists=self.objects.head_budget(self.namespace, self.name) is not None,
            head=head,
            pods_starting=self._pods_starting(now) if head is None and self.settings.max_starting_pods else 0,
            head_outdated=labels.get(TAG_RAY_LAUNCH_CONFIG) != head_tags(config)[TAG_RAY_LAUNCH_CONFIG],
            workers=workers,
            deleted_workers=tuple(
                p for p in self.objects.pods(self.namespace, self.name, deleted=True) if not is_head(p)
            ),
            outdated_workers=sum(outdated(config, w) for w in workers),
            auth=ray_auth.status(body),
            memory=memory,
            now=now,
        )
        if head is None or pod_phase(head) != "Running" or not observation.head_ip or observation.head_outdated:
            return observation
        port = gcs_port(config["provider"]["head_start_ray_commands"])
        monitor = self.monitor if head["metadata"]["uid"] == self.head_uid else None  # else: a former head's
        return dataclasses.replace(
            observation,
            gcs_address=f"{observation.head_ip}:{port}",
            gcs_answers=gcs_answers(observation.head_ip, port),
            monitor=self._monitor_state(monitor) if monitor else None,
            **(self._autoscaler_view(monitor, config) if monitor else {}),
        )

    def _ownership(self, body: dict[str, Any]) -> Observation:
        """Whose the cluster is (ray_operator.shards), as an observation of that alone; the only request it may make
        is reading the Lease of an operator of another group that owns it."""
        membership, me, valid = self.membership, self.membership.identity, self.membership.valid()
        owner = _owner(body)
        identity, lease = str(owner.get("identity") or ""), str(owner.get("lease") or "")
        successor = chosen(str(body["metadata"].get("uid")), membership.members())
        alive = bool(identity) and identity != me and valid and membership.alive(lease)
        return Observation(
            body["metadata"].get("generation"),
            ownership=ownership(me, valid, identity, alive, successor),
            owner=owner,
            successor=successor or "",
            foreign=bool(identity) and identity != me and not membership.is_member(lease),
        )

    def _monitor_state(self, monitor: MonitorProcess) -> MonitorState:
        now = time.time()
        last_round = monitor.last_round()
        silent = now - last_round
        waited = monitor.waited_for_cpu()
        if self.wait_at_round[0] != last_round:  # a new round: its CPU wait so far is the base
            self.wait_at_round = (last_round, waited)
        return MonitorState(
            exit_code=monitor.exit_code(),
            error=monitor.error(),
            running_seconds=now - self.monitor_started,
            silent_seconds=silent,
            starved_seconds=waited - self.wait_at_round[1],
            made_a_round=last_round > self.monitor_started,
            round_since_config=last_round > self.config_written,
        )

    @staticmethod
    def _autoscaler_view(monitor: MonitorProcess, config: dict[str, Any]) -> dict[str, Any]:
        """status.autoscaler from the autoscaler's last view, and the decisions it made since the last look."""
        view = monitor.view()
        return {
            "autoscaler": autoscaler_status(view, config) if view is not None else None,
            "decisions": tuple(decision_event(made["decision"], made["demand"]) for made in monitor.decisions()),
        }

    def act(self, obs: Observation, step: Step) -> Step:
        """Carry the step out; returns the step taken (another one when carrying it out showed it could not be)."""
        body = self._body
        action = step.action
        if action is Action.HOLD:
            return step
        if action in NOT_MINE:
            return self._not_mine(obs, step)
        if action is Action.INVALID_SPEC:
            self._stop_monitor()
            if self.status.current.get("message") != step.message:
                self.log.error("%s", step.message)
                self.status.event(body, "InvalidSpec", step.message, warning=True)
            return step
        assert obs.config is not None  # a valid spec has a config
        self._write_config(obs.config)
        budget = obs.config["provider"]["head_disruption_budget"]
        makes = not obs.service_exists or (budget and not obs.budget_exists) or action in CREATES_HEAD
        if makes and self._being_deleted(body):  # what the garbage collector just deleted is not made again
            self.log.info("the RayCluster is being deleted: nothing is made for it")
            self._found_deleted = body["metadata"].get("uid")
            return Step(Action.HOLD, "the RayCluster is being deleted")
        if not obs.service_exists:
            create_head_service(self.calls, obs.config, self.objects.service_cache)
        if obs.budget_exists != budget:
            made = keep_head_budget(self.calls, obs.config, self.objects.budget_cache)
            self.log.info(
                "%s the head's PodDisruptionBudget %s", "made" if made else "deleted", head_service_name(self.name)
            )
        if obs.head is not None and obs.head["metadata"]["uid"] != self.head_uid:  # a new head: a new autoscaler
            self._stop_monitor()
            self.head_uid = obs.head["metadata"]["uid"]
        for reason, message, warning in obs.decisions:
            self.status.event(body, reason, message, warning=warning)
        if action in FAILURES:
            self._fail(obs, step)
            if action is not Action.AUTOSCALER_FAILED:
                self._restart_cluster(step.cause or step.message, body)
        elif action is Action.RESTART_CLUSTER:
            self._restart_cluster(step.cause, body)
        elif action is Action.CREATE_HEAD:
            return self._create_head(obs, step)
        elif action is Action.START_AUTOSCALER:
            return self._start_monitor(obs, step)
        elif action in (Action.UNSUPPORTED_RAY, Action.NO_TOKEN_AUTH):
            self.monitor = None  # it exited
            self.unsupported = (obs.generation or 0, step.message)
            self.log.error("%s", step.message)
            self.status.event(body, "UnsupportedRayVersion", step.message, warning=True)
            if action is Action.NO_TOKEN_AUTH:  # a head that runs anyone's jobs is not left running
                self._restart_cluster(step.message, body)
        elif action in AUTOSCALING:
            if action is Action.RUN and (obs.memory.phase != RUNNING or self.recovering):
                self.log.info("running")
            self.failures_in_a_row, self.recovering = 0, False
        return step

    def _not_mine(self, obs: Observation, step: Step) -> Step:
        """Fenced or run elsewhere: no autoscaler here (an Event when another operator is found running it); nobody's,
        or its owner gone: claim it."""
        body, me = self._body, self.membership.identity
        if step.action in (Action.FENCED, Action.NOT_OURS, Action.HAND_OVER):
            if self.monitor is not None and step.action is not Action.HAND_OVER:
                self.log.warning("%s: its autoscaler here is stopped", step.message)
            self._stop_monitor()
        if step.action is Action.NOT_OURS and obs.foreign and self.reported_owner != obs.owner.get("identity"):
            self.reported_owner = obs.owner.get("identity")
            self.log.warning("%s: this operator (%s) leaves it alone", step.message, me)
            self.status.event(
                body, "OwnedByAnotherOperator", f"{step.message}; the operator {me} leaves it alone", warning=True
            )
        if step.action not in (Action.CLAIM, Action.HAND_OVER):
            return step
        new_owner = me if step.action is Action.CLAIM else obs.successor
        claimed = self.status.set_owner(body, self.membership.record_of(new_owner))
        if claimed is None:
            return Step(Action.HOLD, "the RayCluster changed while its owner was written")
        self._body, self.reported_owner = claimed, None
        if step.action is Action.HAND_OVER:
            self.log.info(
                "handed over to the operator %s, chosen for it now (the operator's replicas changed)", new_owner
            )
            self.status.event(
                body,
                "HandedOver",
                f"the operator {me} handed the cluster to the operator {new_owner}, "
                "chosen for it now (the operator's replicas changed)",
            )
            return step
        self.log.info("%s: this operator (%s) runs it now", step.message, me)
        if obs.ownership == ORPHANED:
            self.status.event(body, "TakenOver", f"{step.message}; the operator {me} runs it")
        return step

    def _fail(self, obs: Observation, step: Step) -> None:
        """A failure of the cluster's autoscaling: counted, then recovered from with backoff."""
        self._stop_monitor()
        self.failures_in_a_row += 1
        self.recovering = True
        delay = self.settings.restart_delay(self.failures_in_a_row, spread=random.random())
        self.restart_not_before = time.monotonic() + delay
        AUTOSCALER_RESTARTS.labels(self.namespace, self.name).inc()
        self.log.warning(
            "%s: recovering (restart %d), autoscaler restarts in %.0fs", step.message, obs.memory.retries + 1, delay
        )
        self.status.event(self._body, "AutoscalerFailed", f"{step.cause or step.message}; restarting", warning=True)
        self.failure = failure_reason(step, self.failures_in_a_row)

    def _pods_starting(self, now: datetime) -> int:
        """The Ray pods starting on the busiest node, and the places claimed for pods about to be made."""
        return self.objects.pods_starting(now) + start_gate.claimed(self.settings.start_gate_path)

    def _create_head(self, obs: Observation, step: Step) -> Step:
        """The head pod made, if a node may start one more Ray pod still: its place is claimed against the pods
        starting counted again (clusters decided together each counted without the others' heads), so that neither
        another cluster's head nor an autoscaler's workers take it meanwhile."""
        body = self._body
        assert obs.config is not None
        if "secretName" in obs.auth:
            self._ensure_token(body, obs.config)
        settings = self.settings
        place = None
        if settings.max_starting_pods:
            counted = (settings.max_starting_pods, self.objects.pods_starting(datetime.now(timezone.utc)))
            place = start_gate.claim(settings.start_gate_path, 1, counted, settings.kept_for_workers)
            if not place.allowed:
                return waiting_for_head_slot(place.taken, settings)
        try:
            head = create_head_pod(self.calls, obs.config, self.objects.pod_cache)
        except Exception:  # a pod the API refuses, retried, holds no place from other clusters
            if place is not None:
                start_gate.withdraw(settings.start_gate_path, place, 1)
            raise
        self.log.info("created head pod %s", head["metadata"]["name"])
        self.status.event(body, "HeadCreated", f"created head pod {head['metadata']['name']}")
        return step

    def _start_monitor(self, obs: Observation, step: Step) -> Step:
        body = self._body
        assert obs.config is not None
        mode = obs.config["provider"]["ray_auth_mode"]
        token = None
        if mode == ray_auth.AUTH_TOKEN:
            token = ray_auth.head_token(body)
            referenced = ray_auth.head_token_secret(body)
            if token is None and referenced is not None:  # the user's Secret: missing, it is theirs to make
                token = read_referenced_token(self.calls, self.namespace, *referenced)
            if token is None:
                token = read_token(self.calls, self.name, obs.config["provider"])
            if token is None:
                why = f"the Secret {ray_auth.secret_name(self.name)} with the cluster's token is gone"
                self._restart_cluster(f"{why}: a new head gets a new token", body)
                return Step(Action.RESTART_CLUSTER, f"{why}: restarting the cluster with a new token")
        self.monitor = MonitorProcess(
            MonitorSpec(
                self.name,
                self.namespace,
                obs.gcs_address,
                self.config_path,
                self.dir / "heartbeat",
                self.settings.log_level,
                auth_mode=mode,
                auth_token=token,
                memory_limit_bytes=self.settings.monitor_memory_limit_mb * 2**20,
                fence_path=self.settings.fence_path,
            )
        )
        self.monitor_started = time.time()
        self.log.info("started the autoscaler (pid %s) for GCS %s", self.monitor.pid, obs.gcs_address)
        return step
