"""The kubelet stand-in: binds pods to its node, runs them as local processes, reports their status like a kubelet.

The node: registered with the machine's capacity (or the one given), its Lease renewed every
`LEASE_RENEW_SECONDS` as a kubelet's heartbeat; pods are bound to it by the runtime itself, or by a
scheduler (`bind_pods=False`). A pod's lifecycle, in its own thread (`PodWorker`): refuse an unsupported
image with a waiting container status; otherwise give it its network (network.py) and its projected
volumes (volumes.py: the ServiceAccount token), start each container in it as PID 1 of the pod's own PID,
mount and UTS namespaces (it dies with the runtime through PR_SET_PDEATHSIG and unshare's --kill-child),
with KUBERNETES_SERVICE_HOST/_PORT leading to the API server (api_relay.py), report Running with the pod
IP and Ready, follow exits per restartPolicy (restartCount, Succeeded/Failed), and on deletion stop it
within its grace period (SIGTERM to each container's PID 1, then SIGKILL), report how its containers ended, and
delete the pod object with `gracePeriodSeconds: 0` in the DeleteOptions body (a real API server reads them from
the body only).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import kubernetes
import psutil
import urllib3
from kubernetes.client.exceptions import ApiException

from pod_runtime.api_relay import SERVICE_NAMES, ApiRelay
from pod_runtime.containers import Reference, command_line, container_env, dirs_to_keep, supported_image
from pod_runtime.kubelet_server import KubeletServer, tail
from pod_runtime.network import NETWORKS
from pod_runtime.volumes import MissingReference, projected_mounts, read_references, write_projected

log = logging.getLogger(__name__)

LOG_ANNOTATION = "pod-runtime.local/log-file"
POLL_SECONDS = 0.2
MAX_RESTART_BACKOFF = 30.0
API_RETRY_SECONDS = 1.0  # a status or final delete the API server did not take is sent again this often
TERMINATION_MESSAGE_BYTES, TERMINATION_MESSAGE_LINES = 2048, 80  # a kubelet's bounds on a message from logs
LEASE_SECONDS = 40  # a kubelet's node lease duration, renewed every quarter of it
LEASE_RENEW_SECONDS = 10.0


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the thread that started it (and so the runtime) dies."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


REQUEST_TIMEOUT = (5, 30)  # seconds to connect, to read
WATCH_SECONDS = 5  # how long the server keeps one watch open before the runtime lists again


def bounded(client: kubernetes.client.ApiClient) -> kubernetes.client.ApiClient:
    """The client, every request of which ends within `REQUEST_TIMEOUT` unless it asks for another: a request made
    while the API server starts up can go unanswered for good, and a kubelet stuck on one runs no pod again."""
    call_api = client.call_api

    def call_bounded(*args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        return call_api(*args, _request_timeout=_request_timeout or REQUEST_TIMEOUT, **kwargs)

    client.call_api = call_bounded  # type: ignore[method-assign]
    return client


def final_delete(core: kubernetes.client.CoreV1Api, name: str, namespace: str, uid: str) -> None:
    """The kubelet's last word on a pod: delete it with grace 0, in the DeleteOptions body (a real API server
    ignores query parameters when a body is sent)."""
    core.delete_namespaced_pod(name, namespace, body={"gracePeriodSeconds": 0, "preconditions": {"uid": uid}})


def _selected(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class Container:
    """One container of a pod: a process group in the pod's namespaces."""

    def __init__(self, spec: dict[str, Any], log_path: Path) -> None:
        self.spec = spec
        self.name = spec["name"]
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self.started_at = ""
        self.finished: dict[str, Any] | None = None
        self.next_start = 0.0
        self.volumes: list[tuple[str, str]] = []  # (host directory, mount path)
        self.referenced: dict[Reference, str] = {}  # the Secret and ConfigMap keys its env takes

    def start(
        self,
        pod: dict[str, Any],
        runtime: PodRuntime,
        name: str,
        ip: str,
        volumes: list[tuple[str, str]],
        referenced: dict[Reference, str],
    ) -> None:
        self.volumes, self.referenced = volumes, referenced
        node = {**runtime.relay.environment(), **runtime.network.environment(ip)}
        env = container_env(pod, self.spec, node, referenced, runtime.images.get(self.spec.get("image", "")))
        argv = runtime.network.command(name, pod["metadata"]["name"], command_line(self.spec, env), volumes)
        with open(self.log_path, "ab") as output:
            self.process = subprocess.Popen(
                argv,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd="/",
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.started_at = _now()
        self.finished = None

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def record_exit(self, code: int) -> None:
        """The container's terminated state, as its status reports it from now on."""
        self.finished = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": self.started_at,
            "finishedAt": _now(),
        }
        if code != 0 and self.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            self.finished["message"] = self.log_tail()

    def log_tail(self) -> str:
        """The end of the container's log as a kubelet takes it for a termination message (FallbackToLogsOnError):
        the last 80 lines or 2048 bytes, whichever is less."""
        with open(self.log_path, "rb") as log_file:
            log_file.seek(max(0, self.log_path.stat().st_size - TERMINATION_MESSAGE_BYTES))
            data = log_file.read()
        return tail(data, TERMINATION_MESSAGE_LINES, None).decode(errors="replace")

    def terminate(self) -> None:
        """SIGTERM to the container's PID 1 (as a container runtime sends it: the container's other processes are
        its to stop)."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            init = psutil.Process(self.process.pid).children()  # unshare's child: PID 1 of the container
        except psutil.Error:
            init = []
        for process in init:
            try:
                process.send_signal(signal.SIGTERM)
            except psutil.Error:
                pass

    def reap(self, deadline: Callable[[], float]) -> None:
        """Wait for the container to end, and SIGKILL what is left at `deadline()` (a time.monotonic() time, which
        a grace period shortened meanwhile brings forward), but not before 0.1 s."""
        if self.process is None:
            return
        while self.process.poll() is None:
            left = deadline() - time.monotonic()
            try:
                self.process.wait(timeout=max(min(left, POLL_SECONDS), 0.1))
            except subprocess.TimeoutExpired:
                if left <= POLL_SECONDS:
                    os.killpg(self.process.pid, signal.SIGKILL)  # unshare dies; --kill-child takes PID 1 along
                    self.process.wait(timeout=10)

    def status(self, image: str) -> dict[str, Any]:
        running = self.process is not None and self.finished is None  # an exit counts once the pod's worker has seen it
        status: dict[str, Any] = {
            "name": self.name,
            "image": image,
            "imageID": "local-ray",
            "restartCount": self.restarts,
            "ready": running,
            "started": running,
            "containerID": f"local://{self.process.pid}" if self.process else "",
        }
        if running:
            status["state"] = {"running": {"startedAt": self.started_at}}
        elif self.finished:
            status["state"] = {"terminated": self.finished}
        else:
            status["state"] = {"waiting": {"reason": "ContainerCreating"}}
        return status


class PodWorker:
    """Runs one pod until it is deleted."""

    def __init__(self, runtime: PodRuntime, pod: dict[str, Any]) -> None:
        self.runtime = runtime
        self.pod = pod
        self.name, self.namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
        self.uid = pod["metadata"]["uid"]
        self.net_name: str | None = None
        self.ip: str | None = None
        self.containers: list[Container] = []
        self.deleting = threading.Event()
        self.gone = threading.Event()  # the pod object no longer exists
        self.grace = 30.0
        self.volume_dir = runtime.volume_dir / self.uid
        self.report_again_at = 0.0  # when a status the API server did not take is sent again; 0: none pending
        self.thread = threading.Thread(target=self._run, name=f"pod {self.namespace}/{self.name}", daemon=True)

    def delete(self, grace: float) -> None:
        self.grace = min(self.grace, grace) if self.deleting.is_set() else grace
        self.deleting.set()

    def _patch_status(self, status: dict[str, Any]) -> None:
        """Write the pod's status; if the API server does not take it, `_supervise` reports again later."""
        try:
            self.runtime.core.patch_namespaced_pod_status(self.name, self.namespace, {"status": status})
            self.report_again_at = 0.0
        except (ApiException, urllib3.exceptions.HTTPError) as error:
            if getattr(error, "status", None) != 404:
                log.warning("pod %s/%s: status update failed (sent again): %s", self.namespace, self.name, error)
                self.report_again_at = time.monotonic() + API_RETRY_SECONDS

    def _conditions(self, ready: bool) -> list[dict[str, Any]]:
        stamp = _now()
        return [
            {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": stamp}
            for kind, ok in (
                ("PodScheduled", True),
                ("Initialized", True),
                ("ContainersReady", ready),
                ("Ready", ready),
            )
        ]

    def _report(self) -> None:
        images = {c["name"]: c.get("image", "") for c in self.pod["spec"]["containers"]}
        statuses = [c.status(images[c.name]) for c in self.containers]
        codes = [c.finished["exitCode"] if c.finished else None for c in self.containers]
        restart_policy = self.pod["spec"].get("restartPolicy", "Always")
        if all(code is not None for code in codes) and (
            restart_policy == "Never" or (restart_policy == "OnFailure" and not any(codes))
        ):
            phase = "Succeeded" if not any(codes) else "Failed"
        else:
            phase = "Running"
        ready = phase == "Running" and all(s["ready"] for s in statuses)
        self._patch_status(
            {
                "phase": phase,
                "podIP": self.ip,
                "podIPs": [{"ip": self.ip}],
                "hostIP": self.runtime.network.gateway,
                "hostIPs": [{"ip": self.runtime.network.gateway}],
                "startTime": self.pod.get("status", {}).get("startTime") or _now(),
                "conditions": self._conditions(ready),
                "containerStatuses": statuses,
            }
        )
        self.runtime.pod_changed(self.uid, phase == "Running" and ready, self.ip)

    def _refuse(self, images: list[str]) -> None:
        message = (
            f"image {', '.join(images)} cannot run here: this node runs rayproject/ray images only "
            "(on the local Ray installation)"
        )
        log.warning("pod %s/%s: %s", self.namespace, self.name, message)
        self._waiting("ErrImagePull", message)

    def _waiting(self, reason: str, message: str) -> None:
        """Pending, every container waiting for `reason`."""
        self._patch_status(
            {
                "phase": "Pending",
                "conditions": self._conditions(False),
                "containerStatuses": self._unrun({"waiting": {"reason": reason, "message": message}}),
            }
        )

    def _unrun(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        """The status of every container of the pod when none runs here: each in `state`."""
        return [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "restartCount": 0,
                "ready": False,
                "started": False,
                "state": state,
            }
            for c in self.pod["spec"]["containers"]
        ]

    def _run(self) -> None:
        try:
            refused = [
                c.get("image", "") for c in self.pod["spec"]["containers"] if not supported_image(c.get("image", ""))
            ]
            if refused:
                self._refuse(refused)
                self.deleting.wait()
                return
            if self._lost_with_an_earlier_runtime():
                self.deleting.wait()
                return
            if self._start_until_started():
                self._supervise()
        except Exception:  # noqa: BLE001 - one pod's failure must not take the runtime down
            log.exception("pod %s/%s failed", self.namespace, self.name)
        finally:
            self._finish()

    def _lost_with_an_earlier_runtime(self) -> bool:
        """Whether the pod ran under an earlier runtime (it has a pod IP), its containers dying with it, and may not
        run again (restartPolicy Never): then it is Failed, each container reported as a kubelet reports one it can
        no longer find. A pod that restarts runs again, at its IP (the API server keeps a pod's IP for good)."""
        if not (self.pod.get("status") or {}).get("podIP") or self.pod["spec"].get("restartPolicy") != "Never":
            return False
        log.info("pod %s/%s: its containers died with an earlier runtime; Failed", self.namespace, self.name)
        lost = {
            "exitCode": 137,
            "reason": "ContainerStatusUnknown",
            "message": "The container could not be located when the pod was terminated",
            "finishedAt": _now(),
        }
        self._patch_status(
            {
                "phase": "Failed",
                "conditions": self._conditions(False),
                "containerStatuses": self._unrun({"terminated": lost}),
            }
        )
        return True

    def _start_until_started(self) -> bool:
        """Start the pod; a start that fails (its network could not be made, say) is undone, reported as a kubelet
        reports CreateContainerError, and tried again with backoff. False: the pod was deleted first."""
        delay = 1.0
        while True:
            try:
                return self._start()
            except Exception as error:  # noqa: BLE001 - retried, as a kubelet retries
                log.exception("pod %s/%s: could not start (retrying in %.0fs)", self.namespace, self.name, delay)
                self._release(lambda: 0.0)
                self._waiting("CreateContainerError", str(error))
            if self.deleting.wait(delay):
                return False
            delay = min(delay * 2, MAX_RESTART_BACKOFF)

    def _write_volumes(self) -> dict[str, list[tuple[str, str]]] | None:
        """Each container's projected volumes (volume name, mount path), their files written; the API calls
        they need are retried, as a kubelet's are (a ServiceAccount may not exist yet). None: deleted meanwhile."""
        mounts = {spec["name"]: projected_mounts(self.pod, spec) for spec in self.pod["spec"]["containers"]}
        for volume in sorted({volume for pairs in mounts.values() for volume, _ in pairs}):
            while True:
                try:
                    write_projected(self.runtime.core, self.pod, volume, self.volume_dir / volume)
                    break
                except (ApiException, urllib3.exceptions.HTTPError) as error:
                    log.warning(
                        "pod %s/%s: volume %s not ready (retrying): %s",
                        self.namespace,
                        self.name,
                        volume,
                        getattr(error, "reason", error),
                    )
                if self.deleting.wait(API_RETRY_SECONDS):
                    return None
        return mounts

    def _read_references(self) -> dict[Reference, str] | None:
        """The Secret and ConfigMap keys the containers' env takes; while one is missing the containers wait in
        CreateContainerConfigError, as a kubelet's do. None: deleted meanwhile."""
        while True:
            try:
                return read_references(self.runtime.core, self.pod)
            except MissingReference as missing:
                log.warning("pod %s/%s: %s (retrying)", self.namespace, self.name, missing)
                self._waiting("CreateContainerConfigError", str(missing))
            except (ApiException, urllib3.exceptions.HTTPError) as error:
                log.warning("pod %s/%s: env not readable (retrying): %s", self.namespace, self.name, error)
            if self.deleting.wait(API_RETRY_SECONDS):
                return None

    def _start(self) -> bool:
        """The pod's network and containers; False: deleted before its volumes or env could be made."""
        volumes = self._write_volumes()
        referenced = self._read_references() if volumes is not None else None
        if volumes is None or referenced is None:
            return False
        had = (self.pod.get("status") or {}).get("podIP")
        self.net_name, self.ip = self.runtime.network.add_pod(self.uid[:13], had)
        self.pod.setdefault("status", {})["podIP"] = self.ip
        self.runtime.write_hosts(self)
        first_log = None
        for spec in self.pod["spec"]["containers"]:
            log_path = self.runtime.log_path(self.namespace, self.name, spec["name"])
            first_log = first_log or log_path
            container = Container(spec, log_path)
            container.start(
                self.pod,
                self.runtime,
                self.net_name,
                self.ip,
                [(str(self.volume_dir / volume), path) for volume, path in volumes[spec["name"]]],
                referenced,
            )
            self.containers.append(container)
        try:
            self.runtime.core.patch_namespaced_pod(
                self.name, self.namespace, {"metadata": {"annotations": {LOG_ANNOTATION: str(first_log)}}}
            )
        except ApiException:
            pass
        log.info("pod %s/%s running at %s", self.namespace, self.name, self.ip)
        self._report()
        return True

    def _supervise(self) -> None:
        restart_policy = self.pod["spec"].get("restartPolicy", "Always")
        while not self.deleting.is_set() and not self.runtime.stopping.is_set():
            changed = False
            for container in self.containers:
                code = container.exit_code()
                if code is None or container.finished is not None:
                    continue
                container.record_exit(code)
                changed = True
                if restart_policy == "Always" or (restart_policy == "OnFailure" and code != 0):
                    container.next_start = time.monotonic() + min(MAX_RESTART_BACKOFF, 2.0**container.restarts)
            for container in self.containers:
                if container.finished is not None and container.next_start and time.monotonic() >= container.next_start:
                    container.restarts += 1
                    container.next_start = 0.0
                    container.start(
                        self.pod, self.runtime, self.net_name, self.ip, container.volumes, container.referenced
                    )
                    changed = True
            if changed or (self.report_again_at and time.monotonic() >= self.report_again_at):
                self._report()
            self.deleting.wait(POLL_SECONDS)

    def _release(self, deadline: Callable[[], float], report: bool = False) -> None:
        """Stop the containers, together, each killed if still there at `deadline()` (and, if `report`, say how they
        ended, as a kubelet does before its final delete of a pod), and remove the pod's network: what a start made."""
        for stop in (Container.terminate, lambda container: container.reap(deadline)):
            for container in self.containers:
                try:
                    stop(container)
                except Exception:  # noqa: BLE001 - the network and the pod object must still go
                    log.exception("pod %s/%s: stopping container %s failed", self.namespace, self.name, container.name)
        if report and self.containers:
            try:
                for container in self.containers:
                    code = container.exit_code()
                    if container.finished is None and code is not None:
                        container.record_exit(code)
                self._report()
            except Exception:  # noqa: BLE001 - a status the API server did not take must not keep the pod
                log.exception("pod %s/%s: reporting its stopped containers failed", self.namespace, self.name)
        if self.net_name and self.ip:
            self.runtime.network.remove_pod(self.net_name, self.ip)
        self.containers, self.net_name, self.ip = [], None, None

    def _finish(self) -> None:
        gone, started = self.gone.is_set(), time.monotonic()
        log.info("pod %s/%s: stopping its containers (grace %gs)", self.namespace, self.name, 0 if gone else self.grace)
        # A shorter grace period given meanwhile (a second DELETE), or the object gone, brings the SIGKILL forward.
        self._release(
            lambda: started + (0.0 if self.gone.is_set() else self.grace), report=self.deleting.is_set() and not gone
        )
        shutil.rmtree(self.volume_dir, ignore_errors=True)
        self.runtime.pod_changed(self.uid, False, None)
        if self.deleting.is_set():
            self._delete_object()
        log.info("pod %s/%s stopped", self.namespace, self.name)

    def _delete_object(self) -> None:
        """The kubelet's final delete (grace 0) once the pod's processes are gone; retried through API outages."""
        while not self.gone.is_set() and not self.runtime.stopping.is_set():
            try:
                final_delete(self.runtime.core, self.name, self.namespace, self.uid)
                return
            except (ApiException, urllib3.exceptions.HTTPError) as error:
                if getattr(error, "status", None) in (404, 409):
                    return  # gone already, or another pod now has the name
                log.warning("pod %s/%s: final delete failed (retrying): %s", self.namespace, self.name, error)
            self.gone.wait(API_RETRY_SECONDS)


class PodRuntime:
    def __init__(
        self,
        client: kubernetes.client.ApiClient,
        log_dir: Path,
        node_name: str = "local-node",
        prefix: str = "rrt",
        network: str = "netns",
        subnet: str | None = None,
        bind_pods: bool = True,
        capacity: dict[str, str] | None = None,
        keep: list[str] | None = None,
        images: dict[str, str] | None = None,
    ) -> None:
        client = bounded(client)
        self.core = kubernetes.client.CoreV1Api(client)
        self.coordination = kubernetes.client.CoordinationV1Api(client)
        self.node_name = node_name
        self.network = NETWORKS[network](prefix, subnet)
        self.images = images or {}  # image -> the directory its containers run from (else: the installed commands)
        self.network.keep = dirs_to_keep([*(keep or []), *self.images.values()])
        self.api_url = client.configuration.host
        self.bind_pods = bind_pods
        self.capacity = {
            "cpu": str(os.cpu_count()),
            "memory": f"{psutil.virtual_memory().total // 1024}Ki",
            "pods": "110",
            **(capacity or {}),
        }
        self.log_dir = log_dir
        self.volume_dir = log_dir / "volumes"
        self.stopping = threading.Event()
        self.workers: dict[str, PodWorker] = {}
        self.services: dict[tuple[str, str], dict[str, Any]] = {}
        self.endpoints: dict[
            str, tuple[str, str, dict[str, str], str]
        ] = {}  # uid -> (namespace, name, labels, ip) of ready pods
        self._lock = threading.RLock()
        self._threads: list[threading.Thread] = []

    # Lifecycle.
    def start(self) -> PodRuntime:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.network.setup()
        # Both listen on the gateway, which exists once the network is set up.
        self.relay = ApiRelay(self.network.gateway, self.api_url).start()
        self.kubelet_server = KubeletServer(self.network.gateway, self.log_path, self.stopping).start()
        node_uid = self._register_node()
        heartbeat = threading.Thread(target=self._heartbeat, args=(node_uid,), daemon=True, name="node lease")
        heartbeat.start()
        self._threads.append(heartbeat)
        for target, lister in (
            (self._on_pod, self.core.list_pod_for_all_namespaces),
            (self._on_service, self.core.list_service_for_all_namespaces),
        ):
            thread = threading.Thread(
                target=self._watch, args=(lister, target), daemon=True, name=f"watch {target.__name__}"
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop every pod's processes and remove every namespace; pod objects stay in the API."""
        self.stopping.set()
        with self._lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.grace = min(worker.grace, 5.0)
            worker.deleting.set()
            worker.gone.set()
        log.info("stopping: %d pods", len(workers))
        for worker in workers:
            worker.thread.join(timeout=30)
            if worker.thread.is_alive():
                log.warning("a pod's worker did not end within 30 s: %s", worker.thread.name)
        log.info("stopping: pods stopped, then the API relay, the kubelet server and the pod network")
        self.relay.stop()
        self.kubelet_server.stop()
        self.network.teardown()
        log.info("stopped")

    def _node_status(self) -> dict[str, Any]:
        stamp = _now()
        return {
            "addresses": [{"type": "InternalIP", "address": self.network.gateway}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_server.port}},
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "pod runtime is ready",
                    "lastHeartbeatTime": stamp,
                    "lastTransitionTime": stamp,
                }
            ],
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "pod-runtime",
                "containerRuntimeVersion": "local://",
                "kernelVersion": os.uname().release,
                "osImage": "local",
                "kubeProxyVersion": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        }

    def _register_node(self) -> str:
        """The Node, created or (when it exists from an earlier run) its status made current; returns its uid."""
        node = {
            "metadata": {
                "name": self.node_name,
                "labels": {"kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux"},
            },
            "status": self._node_status(),
        }
        try:
            return self.core.create_node(node).metadata.uid
        except ApiException as error:
            if error.status != 409:
                raise
        return self.core.patch_node_status(self.node_name, {"status": self._node_status()}).metadata.uid

    def _heartbeat(self, node_uid: str) -> None:
        """Renew the node's Lease in kube-node-lease, as a kubelet does; an outage is logged and retried."""
        namespace = "kube-node-lease"
        while not self.stopping.is_set():
            spec = {"holderIdentity": self.node_name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": _micro_now()}
            try:
                try:
                    self.coordination.patch_namespaced_lease(self.node_name, namespace, {"spec": spec})
                except ApiException as error:
                    if error.status != 404:
                        raise
                    self.coordination.create_namespaced_lease(
                        namespace,
                        {
                            "metadata": {
                                "name": self.node_name,
                                "ownerReferences": [
                                    {"apiVersion": "v1", "kind": "Node", "name": self.node_name, "uid": node_uid}
                                ],
                            },
                            "spec": spec,
                        },
                    )
            except (ApiException, urllib3.exceptions.HTTPError) as error:
                log.warning("node lease not renewed (retrying): %s", getattr(error, "reason", error))
            self.stopping.wait(LEASE_RENEW_SECONDS)

    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        return self.log_dir / f"{namespace}_{pod}_{container}.log"

    # Watching.
    def _watch(self, lister: Any, handle: Any) -> None:
        while not self.stopping.is_set():
            try:
                listing = lister(_preload_content=False)
                body = json.loads(listing.data)
                for item in body["items"]:
                    handle("ADDED", item)
                stream = kubernetes.watch.Watch()
                for event in stream.stream(
                    lister,
                    resource_version=body["metadata"]["resourceVersion"],
                    timeout_seconds=WATCH_SECONDS,
                    allow_watch_bookmarks=True,
                    _request_timeout=(REQUEST_TIMEOUT[0], WATCH_SECONDS + REQUEST_TIMEOUT[1]),
                ):
                    if self.stopping.is_set():
                        stream.stop()
                        break
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        handle(event["type"], event["raw_object"])
            except Exception as error:  # noqa: BLE001 - relist after any failure, as a kubelet's informer does
                if not self.stopping.is_set():
                    log.info("watch restarting after: %s", error)
                    self.stopping.wait(0.5)

    def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        metadata = pod["metadata"]
        uid = metadata["uid"]
        with self._lock:
            worker = self.workers.get(uid)
            if kind == "DELETED":
                if worker is not None:
                    worker.gone.set()
                    worker.delete(0)
                    self.workers.pop(uid, None)
                return
            if metadata.get("deletionTimestamp"):
                if worker is not None and worker.thread.is_alive():
                    worker.delete(float(metadata.get("deletionGracePeriodSeconds") or 0))
                elif (pod.get("spec") or {}).get("nodeName") == self.node_name:
                    # Nothing of it runs here (bound while no runtime ran, or its worker ended): only the delete.
                    self._finalize(pod)
                return
            if worker is not None or self.stopping.is_set():
                return
            node = (pod.get("spec") or {}).get("nodeName")
            if node and node != self.node_name:
                return
            if not node and not (self.bind_pods and self._bind(pod)):
                return  # a scheduler binds it: seen again once it has a node
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                return
            worker = self.workers[uid] = PodWorker(self, pod)
            worker.thread.start()

    def _finalize(self, pod: dict[str, Any]) -> None:
        """The final delete of a pod this node does not run; a failure is seen again at the next relist."""
        metadata = pod["metadata"]
        try:
            final_delete(self.core, metadata["name"], metadata["namespace"], metadata["uid"])
        except (ApiException, urllib3.exceptions.HTTPError) as error:
            if getattr(error, "status", None) not in (404, 409):
                log.warning("pod %s/%s: final delete failed: %s", metadata["namespace"], metadata["name"], error)

    def _bind(self, pod: dict[str, Any]) -> bool:
        try:
            self.core.create_namespaced_pod_binding(
                pod["metadata"]["name"],
                pod["metadata"]["namespace"],
                {"metadata": {"name": pod["metadata"]["name"]}, "target": {"kind": "Node", "name": self.node_name}},
                _preload_content=False,
            )
        except ApiException:
            return False
        pod["spec"]["nodeName"] = self.node_name
        return True

    def _on_service(self, kind: str, service: dict[str, Any]) -> None:
        key = (service["metadata"]["namespace"], service["metadata"]["name"])
        with self._lock:
            if kind == "DELETED":
                self.services.pop(key, None)
            else:
                self.services[key] = service
        self.refresh_hosts()

    # Service names for the pods.
    def pod_changed(self, uid: str, ready: bool, ip: str | None) -> None:
        with self._lock:
            worker = self.workers.get(uid)
            if ready and ip and worker is not None:
                self.endpoints[uid] = (worker.namespace, worker.name, worker.pod["metadata"].get("labels") or {}, ip)
            else:
                self.endpoints.pop(uid, None)
        self.refresh_hosts()

    def _service_entries(self) -> list[tuple[str, list[str]]]:
        entries = [(self.relay.host, SERVICE_NAMES)]
        with self._lock:
            for (namespace, name), service in sorted(self.services.items()):
                selector = (service.get("spec") or {}).get("selector") or {}
                ips = sorted(
                    ip
                    for ns, _, labels, ip in self.endpoints.values()
                    if ns == namespace and _selected(selector, labels)
                )
                for ip in ips[:1]:
                    entries.append(
                        (
                            ip,
                            [f"{name}.{namespace}.svc.cluster.local", f"{name}.{namespace}.svc", f"{name}.{namespace}"],
                        )
                    )
        return entries

    def write_hosts(self, worker: PodWorker) -> None:
        if worker.net_name and worker.ip:
            self.network.write_hosts(worker.net_name, [(worker.ip, [worker.name])] + self._service_entries())

    def refresh_hosts(self) -> None:
        with self._lock:
            workers = [w for w in self.workers.values() if w.net_name]
        for worker in workers:
            try:
                self.write_hosts(worker)
            except OSError:
                pass  # the pod is being removed
