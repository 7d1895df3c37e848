"""Where one RayCluster is reconciled: its head Service and head pod, its autoscaler process, its phase.

Each RayCluster has a controller, reconciled by the operator's worker pool
(ray_operator.work_queue) on every change of the RayCluster, of its pods or of
its head Service (seen through the operator's watches: a reconciliation makes
no API request unless something must change), and every `resync_seconds`
anyway, for what only time shows (the autoscaler's health, backoffs, the
head's GCS starting to answer):

- invalid spec: phase Error, the problems in `status.message`, an Event; nothing is created;
- the head podType's pod template changed: the whole cluster restarts (Updating);
- the head pod gone or failed, the autoscaler exited, hung (no round for
  `stall_rounds` intervals) or grew past its memory limit: AutoscalingExceptionRecovery,
  `autoscalerRetries` + 1, the head recreated if needed, the autoscaler restarted
  after a bounded exponential backoff;
- otherwise the autoscaler runs on the current config, which it re-reads every
  round: worker podType changes replace those workers through the autoscaler's
  launch-config check, min/max and speed changes only reconfigure it.
Phase Updating while launching or applying a change, Running while the
autoscaler is healthy.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from datetime import datetime, timezone
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException
from ray.autoscaler.tags import NODE_KIND_HEAD, TAG_RAY_LAUNCH_CONFIG, TAG_RAY_NODE_KIND, TAG_RAY_USER_NODE_TYPE

from autoscaler_bridge import ray_auth
from autoscaler_bridge.cluster_config import autoscaler_config, head_tags, outdated
from autoscaler_bridge.kube_client import KubeCalls, namespace_terminating
from autoscaler_bridge.names import API_GROUP, API_VERSION, PLURAL
from autoscaler_bridge.node_provider import delete_pods, pending_pods_block
from autoscaler_bridge.ray_start import gcs_port
from autoscaler_bridge.validation import validate_raycluster
from autoscaler_bridge.watch_cache import NotSynced
from ray_operator.auth_secret import TokenSecretError, ensure_token, read_token
from ray_operator.autoscaler_view import autoscaler_status, decision_event
from ray_operator.cluster_objects import ClusterObjects
from ray_operator.head import create_head_pod, create_head_service
from ray_operator.logs import cluster_logger
from ray_operator.metrics import AUTOSCALER_RESTARTS, RECONCILE_SECONDS
from ray_operator.monitor_process import EXIT_NO_TOKEN_AUTH, EXIT_UNSUPPORTED_RAY, MonitorProcess, MonitorSpec
from ray_operator.pod_failures import why_stopped
from ray_operator.settings import Settings
from ray_operator.status import ERROR, RECOVERING, RUNNING, UPDATING, StatusWriter

log = logging.getLogger(__name__)


def _phase_of(pod: dict[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase", "Pending")


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return _phase_of(pod) == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
    )


def gcs_answers(ip: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


class ClusterController:
    def __init__(self, body: dict[str, Any], settings: Settings, calls: KubeCalls, objects: ClusterObjects) -> None:
        self.name = body["metadata"]["name"]
        self.namespace = body["metadata"]["namespace"]
        self.settings, self.calls, self.objects = settings, calls, objects
        self.log = cluster_logger(log, self.name, self.namespace)
        self.status = StatusWriter(calls, self.name, self.namespace)
        self.status.adopt(body.get("status"))
        self.dir = settings.work_dir / f"{self.namespace}.{self.name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.dir / "autoscaler.json"
        self.monitor: MonitorProcess | None = None
        self.monitor_started = 0.0
        self.config_written = 0.0
        self.failures_in_a_row = 0
        self.recovering = False
        self.failure = ""  # the last failure's reason, kept in status.message while recovering from it
        self.restart_not_before = 0.0
        self.head_uid: str | None = None
        self.view_written_at = 0.0  # when status.autoscaler was last written (monotonic)
        self.unsupported: tuple[int, str] | None = None  # (generation, why) the cluster's Ray cannot be autoscaled
        self._body = body
        self._derived_from: tuple[Any, list[Any], dict[str, Any] | None] | None = None
        self._config_text: str | None = None  # the autoscaler config file's content, as last written
        self._stopping = threading.Event()
        self._reconciling = threading.Lock()

    # Lifecycle, driven by the manager.
    def observe(self, body: dict[str, Any]) -> None:
        self._body = body

    @property
    def stopped(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Stop reconciling (a reconciliation under way ends first) and stop the autoscaler; pods are left as they
        are."""
        self._stopping.set()
        if self._reconciling.acquire(timeout=30):
            self._reconciling.release()
        self._stop_monitor()

    def reconcile_once(self) -> bool:
        """One reconciliation; whether it got through. A failure is logged and written to status, and never ends
        the next one. In a namespace being deleted the cluster is let go quietly: nothing more is made for it,
        nothing is an error."""
        with self._reconciling:
            return self._stopping.is_set() or self._reconcile_logged()

    def _reconcile_logged(self) -> bool:
        try:
            with RECONCILE_SECONDS.time():
                self.reconcile()
            return True
        except NotSynced as unknown:  # the operator's watches cannot say what exists: nothing is decided
            self.log.info("%s", unknown)
            return False
        except Exception as error:  # noqa: BLE001 - one cluster's failure must not end its reconciliation
            if namespace_terminating(error):
                self.log.info("its namespace is being deleted: nothing more is created for it")
                self._stopping.set()
                self._stop_monitor()
                return True
            if isinstance(error, TokenSecretError):  # the user's Secret: theirs to fix, no failure of the operator
                message = str(error)
                self.log.error("%s", message)
            else:
                message = f"unexpected failure: {error}"
                self.log.exception("reconciling failed")
            try:
                if isinstance(error, TokenSecretError) and self.status.current.get("message") != message:
                    self.status.event(self._body, "InvalidTokenSecret", message, warning=True)
                self.status.write(phase=ERROR, message=message)
            except Exception:  # noqa: BLE001
                self.log.exception("writing the Error status failed")
            return False

    # Helpers.
    def _stop_monitor(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None

    def _derived(self, body: dict[str, Any]) -> tuple[list[Any], dict[str, Any] | None]:
        """The spec's problems and, when it has none, its autoscaler config: computed once per version of the
        RayCluster, not on every resync."""
        version = (body["metadata"].get("uid"), body["metadata"].get("resourceVersion"))
        if self._derived_from is None or self._derived_from[0] != version:
            problems = validate_raycluster(body)
            config = (
                None
                if problems
                else autoscaler_config(body, self.settings.max_pending_pods, self.settings.pending_timeout_seconds)
            )
            self._derived_from = (version, problems, config)
        return self._derived_from[1], self._derived_from[2]

    def _write_config(self, config: dict[str, Any]) -> None:
        text = json.dumps(config, sort_keys=True)
        if self._config_text is None and self.config_path.exists():
            self._config_text = self.config_path.read_text()
        if self._config_text == text:
            return
        partial = self.config_path.with_suffix(".tmp")
        partial.write_text(text)
        os.replace(partial, self.config_path)
        self._config_text = text
        self.config_written = time.time()

    def _fail(self, reason: str, body: dict[str, Any], cause: str | None = None) -> None:
        """A failure of the cluster's autoscaling: counted, then recovered from with backoff. `cause`: the reason
        without what changes from one failure to the next (a pod's name), so that failures of one cause make one
        Event with a count."""
        self._stop_monitor()
        self.failures_in_a_row += 1
        self.recovering = True
        delay = self.settings.restart_delay(self.failures_in_a_row)
        self.restart_not_before = time.monotonic() + delay
        retries = int(self.status.current.get("autoscalerRetries") or 0) + 1
        AUTOSCALER_RESTARTS.labels(self.namespace, self.name).inc()
        self.log.warning("%s: recovering (restart %d), autoscaler restarts in %.0fs", reason, retries, delay)
        self.status.event(body, "AutoscalerFailed", f"{cause or reason}; restarting", warning=True)
        times = f" ({self.failures_in_a_row} times in a row)" if self.failures_in_a_row > 1 else ""
        self.failure = f"{reason}{times}"
        self.status.write(phase=RECOVERING, autoscalerRetries=retries, message=self.failure)

    def _restart_cluster(self, reason: str, body: dict[str, Any]) -> None:
        """A new head, and workers with it: every pod of the cluster is deleted."""
        self._stop_monitor()
        self.head_uid = None
        self.log.info("restarting the cluster: %s", reason)
        self.status.event(body, "ClusterRestarting", reason)
        pods = self.objects.pods(self.namespace, self.name)
        delete_pods(self.calls, self.namespace, [p["metadata"]["name"] for p in pods], self.objects.pod_cache)

    def _ensure_token(self, body: dict[str, Any], config: dict[str, Any]) -> None:
        """The cluster's token Secret, made before its first head pod (whose Ray reads it)."""
        _, made = ensure_token(self.calls, self.name, config["provider"])
        if made:
            name = ray_auth.secret_name(self.name)
            self.log.info("made the Secret %s with the cluster's Ray token", name)
            self.status.event(body, "TokenCreated", f"made the Secret {name} with the cluster's Ray token")

    def _being_deleted(self, body: dict[str, Any]) -> bool:
        """Whether the RayCluster is gone or being deleted, asked of the API server itself: when a RayCluster is
        deleted its pods may vanish before the watch says so, and a head pod made then would only be collected."""
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

    @staticmethod
    def _is_head(pod: dict[str, Any]) -> bool:
        return (pod["metadata"].get("labels") or {}).get(TAG_RAY_NODE_KIND) == NODE_KIND_HEAD

    def _waiting(self, message: str, **fields: Any) -> None:
        """Updating, or while recovering from a failure, AutoscalingExceptionRecovery with the failure's reason
        before what is awaited."""
        if self.recovering:
            self.status.write(phase=RECOVERING, message=f"{self.failure}; {message}", **fields)
        else:
            self.status.write(phase=UPDATING, message=message, **fields)

    # The reconciliation.
    def reconcile(self) -> None:
        body = self._body
        generation = body["metadata"].get("generation")
        problems, derived = self._derived(body)
        if problems:
            self._stop_monitor()
            message = "invalid RayCluster: " + "; ".join(str(p) for p in problems)
            if self.status.current.get("message") != message:
                self.log.error("%s", message)
                self.status.event(body, "InvalidSpec", message, warning=True)
            self.status.write(phase=ERROR, message=message, observedGeneration=generation)
            return
        if self.unsupported:
            if self.unsupported[0] == generation:
                return
            self.unsupported = None  # a new spec (e.g. a newer image): tried afresh
        config = derived
        assert config is not None  # a spec without problems has a config
        self._write_config(config)
        if self.objects.head_service(self.namespace, self.name) is None:
            create_head_service(self.calls, config, self.objects.service_cache)
        pods = self.objects.pods(self.namespace, self.name)
        heads = [p for p in pods if self._is_head(p)]
        workers = [p for p in pods if not self._is_head(p)]
        head = heads[0] if heads else None
        auth = ray_auth.status(body)
        counts = {**self._counts(config, workers), "rayAuthentication": auth}

        if (
            head is not None
            and (head["metadata"].get("labels") or {}).get(TAG_RAY_LAUNCH_CONFIG)
            != head_tags(config)[TAG_RAY_LAUNCH_CONFIG]
        ):
            self._restart_cluster("the head podType's pod template changed", body)
            self._waiting(
                "restarting the cluster for the head podType's new pod template",
                observedGeneration=generation,
                **counts,
            )
            return
        if head is not None and _phase_of(head) in ("Failed", "Succeeded"):
            why = f"{_phase_of(head)}: {why_stopped(head)}"
            self._fail(f"the head pod {head['metadata']['name']} is {why}", body, cause=f"the head pod is {why}")
            self._restart_cluster("the head pod stopped", body)
            return
        if head is None:
            if self._being_deleted(body):
                self.log.info("the RayCluster is being deleted: no new head pod")
                return
            if self.head_uid is not None or self.status.current.get("phase") == RUNNING:
                self._fail("the head pod is gone", body)
                self._restart_cluster("the head pod is gone", body)
            if time.monotonic() < self.restart_not_before:  # the same backoff as the autoscaler's: no head churn
                self._waiting(
                    f"creating a new head pod in {self.restart_not_before - time.monotonic():.0f}s",
                    conditions=self._conditions(False, False),
                    observedGeneration=generation,
                    **counts,
                )
                return
            if "secretName" in auth:
                self._ensure_token(body, config)
            head = create_head_pod(self.calls, config, self.objects.pod_cache)
            self.log.info("created head pod %s", head["metadata"]["name"])
            self.status.event(body, "HeadCreated", f"created head pod {head['metadata']['name']}")
        if head["metadata"]["uid"] != self.head_uid:
            self._stop_monitor()
            self.head_uid = head["metadata"]["uid"]

        ip = (head.get("status") or {}).get("podIP")
        head_fields = {"headPodIP": ip or "", "observedGeneration": generation, **counts}
        if _phase_of(head) != "Running" or not ip:
            self._waiting(
                f"waiting for the head pod {head['metadata']['name']} to run",
                conditions=self._conditions(False, False),
                **head_fields,
            )
            return
        port = gcs_port(config["provider"]["head_start_ray_commands"])
        if not gcs_answers(ip, port):
            self._waiting(
                f"waiting for Ray on the head pod (GCS {ip}:{port})",
                conditions=self._conditions(False, False),
                **head_fields,
            )
            return
        if not self._monitor_running(body, generation):
            if not self.unsupported:  # an unsupported Ray's Error stands
                self._waiting(self._why_no_monitor(), conditions=self._conditions(True, False), **head_fields)
            return
        self._report_running(config, workers, head_fields)

    def _monitor_running(self, body: dict[str, Any], generation: int | None) -> bool:
        """Check the autoscaler process, (re)starting it when due; True when it is up."""
        monitor = self.monitor
        if monitor is not None:
            code = monitor.exit_code()
            if code in (EXIT_UNSUPPORTED_RAY, EXIT_NO_TOKEN_AUTH):
                why = monitor.error() or "the cluster's Ray version is not supported"
                self.monitor = None
                self.unsupported = (generation or 0, why)
                self.log.error("%s", why)
                self.status.event(body, "UnsupportedRayVersion", why, warning=True)
                if code == EXIT_NO_TOKEN_AUTH:  # a head that runs anyone's jobs is not left running
                    self._restart_cluster(why, body)
                self.status.write(phase=ERROR, message=why)
                return False
            if code is not None:
                self.monitor = None
                error = monitor.error()
                self._fail(f"the autoscaler exited with code {code}" + (f": {error}" if error else ""), body)
            elif (
                time.time() - self.monitor_started > self._stall_seconds()
                and monitor.silent_for(time.time()) > self._stall_seconds()
            ):
                self._fail(f"the autoscaler made no progress for {monitor.silent_for(time.time()):.0f}s", body)
            elif monitor.memory_bytes() > self.settings.monitor_memory_limit_mb * 2**20:
                used = monitor.memory_bytes() // 2**20
                self._fail(
                    f"the autoscaler used {used} MiB, over its limit of {self.settings.monitor_memory_limit_mb} MiB",
                    body,
                )
        if self.monitor is None:
            if time.monotonic() < self.restart_not_before:
                return False
            self._start_monitor(body)
            return False
        return True

    def _stall_seconds(self) -> float:
        return float(self.settings.stall_rounds * self.settings.autoscaler_interval_seconds)

    def _why_no_monitor(self) -> str:
        if self.monitor is None and self.restart_not_before > time.monotonic():
            return f"restarting the autoscaler in {self.restart_not_before - time.monotonic():.0f}s"
        return "starting the autoscaler"

    def _start_monitor(self, body: dict[str, Any]) -> None:
        head_ip = None
        config = json.loads(self.config_path.read_text())
        for pod in self.objects.pods(self.namespace, self.name):
            if self._is_head(pod):
                head_ip = (pod.get("status") or {}).get("podIP")
        if not head_ip:
            return
        address = f"{head_ip}:{gcs_port(config['provider']['head_start_ray_commands'])}"
        mode = config["provider"]["ray_auth_mode"]
        token = None
        if mode == ray_auth.AUTH_TOKEN:
            token = ray_auth.head_token(body) or read_token(self.calls, self.name, config["provider"])
            if token is None:
                why = f"the Secret {ray_auth.secret_name(self.name)} with the cluster's token is gone"
                self._restart_cluster(f"{why}: a new head gets a new token", body)
                return
        self.monitor = MonitorProcess(
            MonitorSpec(
                self.name,
                self.namespace,
                address,
                self.config_path,
                self.dir / "heartbeat",
                self.settings.log_level,
                auth_mode=mode,
                auth_token=token,
            )
        )
        self.monitor_started = time.time()
        self.log.info("started the autoscaler (pid %s) for GCS %s", self.monitor.pid, address)

    def _report_running(self, config: dict[str, Any], workers: list[dict[str, Any]], fields: dict[str, Any]) -> None:
        monitor = self.monitor
        assert monitor is not None
        last_round = time.time() - monitor.silent_for(time.time())
        if last_round <= self.monitor_started:
            self._waiting(
                "waiting for the autoscaler's first round", conditions=self._conditions(True, False), **fields
            )
            return
        self.failures_in_a_row = 0
        was_recovering, self.recovering = self.recovering, False
        replaced = [w for w in workers if outdated(config, w)]
        if replaced:
            phase, message = UPDATING, f"replacing {len(replaced)} workers of changed podTypes"
        elif last_round <= self.config_written:
            phase, message = UPDATING, "applying the new spec"
        else:
            phase, message = RUNNING, ""
        if phase == RUNNING and (self.status.current.get("phase") != RUNNING or was_recovering):
            self.log.info("running")
        fields.update(self._autoscaler_view(monitor, config))
        if phase == RUNNING:  # Running, but with demand no podType can hold: the message says so
            message = (fields.get("autoscaler") or self.status.current.get("autoscaler") or {}).get("message", "")
        self.status.write(phase=phase, message=message, conditions=self._conditions(True, True), **fields)

    def _autoscaler_view(self, monitor: MonitorProcess, config: dict[str, Any]) -> dict[str, Any]:
        """`status.autoscaler` when the autoscaler's view changed (at most every `autoscaler_status_seconds` once
        written: a busy cluster's usage changes every round), and an Event for each decision it made since."""
        current = self.status.current.get("autoscaler")
        view = monitor.view()
        autoscaler = autoscaler_status(view, config) if view is not None else current
        fields = {}
        if autoscaler != current and (
            current is None or time.monotonic() - self.view_written_at >= self.settings.autoscaler_status_seconds
        ):
            fields["autoscaler"] = autoscaler
            self.view_written_at = time.monotonic()
        for made in monitor.decisions():
            reason, message, warning = decision_event(made["decision"], made["demand"])
            self.status.event(self._body, reason, message, warning=warning)
        return fields

    def _counts(self, config: dict[str, Any], workers: list[dict[str, Any]]) -> dict[str, Any]:
        now = datetime.now(timezone.utc)
        per_type = []
        for type_name in config["available_node_types"]:
            mine = [w for w in workers if (w["metadata"].get("labels") or {}).get(TAG_RAY_USER_NODE_TYPE) == type_name]
            entry: dict[str, Any] = {
                "name": type_name,
                "desired": len(mine),
                "ready": sum(_ready(w) for w in mine),
                "pending": sum(_phase_of(w) == "Pending" for w in mine),
            }
            blocked = pending_pods_block(
                mine, self.settings.max_pending_pods, self.settings.pending_timeout_seconds, now
            )
            if blocked:
                entry["message"] = blocked
            per_type.append(entry)
        return {"podTypes": per_type, "desiredWorkers": len(workers), "readyWorkers": sum(_ready(w) for w in workers)}

    @staticmethod
    def _conditions(head_ready: bool, autoscaler_healthy: bool) -> list[dict[str, Any]]:
        def condition(kind: str, ok: bool, reason: str) -> dict[str, Any]:
            return {"type": kind, "status": "True" if ok else "False", "reason": reason}

        return [
            condition("HeadReady", head_ready, "GCSAnswers" if head_ready else "HeadStarting"),
            condition("AutoscalerHealthy", autoscaler_healthy, "Running" if autoscaler_healthy else "NotRunning"),
        ]
