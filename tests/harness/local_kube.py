"""A whole Kubernetes-with-Ray on this machine, for the operator, chart and end-to-end tests.

The API server: the test run's real control plane (control_plane/, one for the whole run, with a
scheduler binding the pods), or the project's own (in this process); the pod runtime (a subprocess,
the node's kubelet: each pod in its own namespaces) and the operator (a subprocess, `ray-operator run`,
so tests can SIGKILL and restart it). Everything is stopped and cleaned up on exit, also what a killed
run left behind; a control plane given from outside is left running for its owner.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import kubernetes
import psutil
import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from control_plane import ControlPlane
from control_plane.processes import free_port, start, stop
from kube_apiserver.server import ApiServer
from pod_runtime.network import NETWORKS
from tests.harness.api import apply_crd
from tests.harness.files import ROOT
from tests.harness.waiting import wait_for

OPERATOR_FLAGS = [  # no --resync-seconds: the tests see the operator woken by watches and due checks alone
    "--autoscaler-interval",
    "1",
    "--health-port",
    "0",
    "--metrics-host",
    "127.0.0.1",
    "--restart-backoff",
    "1",
    "--max-restart-backoff",
    "4",
    "--stall-rounds",
    "10",
    "--max-pending-pods",
    "2",
    "--autoscaler-status-interval",
    "1",
    "--log-level",
    "INFO",
]


# An operator's log line saying it started a cluster's autoscaler: cluster, namespace, time, pid.
STARTED_AUTOSCALER = re.compile(r"^(\S+),(\S+) (\S+ \S+) .*started the autoscaler \(pid (\d+)\)")

# Ray pods ask for whole CPUs; the node offers more than the machine has, as the project's own server
# (which schedules nothing) lets them, so a cluster scales as far on 2 cores as before.
NODE_CAPACITY = ["cpu=64", "memory=64Gi"]


def started_autoscaler(line: str) -> tuple[str, str, int, float] | None:
    """An operator's log line saying it started a cluster's autoscaler: (cluster, namespace, pid, when)."""
    found = STARTED_AUTOSCALER.match(line)
    if not found:
        return None
    when = datetime.strptime(found.group(3), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return found.group(1), found.group(2), int(found.group(4)), when


def autoscaler_alive(pid: int, started: float) -> bool:
    """Whether the autoscaler of `pid` started at `started` still runs: a process of that pid made later is another
    one (pids are reused)."""
    try:
        process = psutil.Process(pid)
        return process.create_time() <= started + 1.0 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def pod_subnet(network: str) -> str:
    """The pod network of this test process's runtimes (their gateway is where pods reach the API server)."""
    return f"{10 if network == 'netns' else 127}.{200 + os.getpid() % 50}.0.0/16"


def pod_gateway(network: str) -> str:
    """Where the pods of pod_subnet(network) reach the API server: the address a control plane's certificate must
    name."""
    return str(ipaddress.ip_network(pod_subnet(network)).network_address + 1)


class LocalKube:
    def __init__(
        self,
        work: Path,
        admin_token: str | None = None,
        network: str = "netns",
        control_plane: ControlPlane | None = None,
    ) -> None:
        self.work = work
        self.admin_token = admin_token
        self.control_plane = control_plane
        self.network_kind = network
        self.network = NETWORKS[network]
        self.data = work / "store.json"
        self.kubeconfig = work / "kubeconfig"
        self.prefix = f"rt{os.getpid() % 10000}"
        self.subnet = pod_subnet(network)
        self.server: ApiServer | ControlPlane | None = None
        self.runtime: subprocess.Popen | None = None
        self._runtime_keep: tuple[Path, ...] = ()
        self._runtime_images: dict[str, Path] | None = None
        self.operators: list[subprocess.Popen] = []
        self.operator_log = work / "operator.log"
        self._log_read = 0  # bytes of operator_log read for autoscaler_starts
        self._log_lock = threading.Lock()
        self._started_autoscalers: list[tuple[str, str, int, float]] = []
        self.metrics_url = ""

    # The parts.
    def start_server(self, port: int = 0) -> None:
        self.server = (
            self.control_plane or ApiServer(port=port, data_file=self.data, admin_token=self.admin_token).start()
        )
        self.server.write_kubeconfig(self.kubeconfig)

    def restart_server(self, down_for: float = 0.0) -> None:
        if isinstance(self.server, ControlPlane):
            self.server.restart_apiserver(down_for)
            return
        port = int(self.server.url.rsplit(":", 1)[1])
        self.server.stop()
        time.sleep(down_for)
        self.start_server(port)

    def start_runtime(self, *keep: Path, images: dict[str, Path] | None = None) -> None:
        """The pod runtime; pods also see `keep` and this checkout (the installed operator runs from it) when they
        lie under /tmp; `images` are the images the node has besides the installed ones (pod_runtime --image)."""
        self._runtime_keep, self._runtime_images = keep, images
        self.network.remove_leftovers(self.prefix)
        kubelet = ["--scheduler-binds", *(f"--capacity={c}" for c in NODE_CAPACITY)] if self.control_plane else []
        kubelet += [f"--keep={path}" for path in (ROOT, *keep)]
        kubelet += [f"--image={image}={directory}" for image, directory in (images or {}).items()]
        self.runtime = start(
            [
                sys.executable,
                "-m",
                "pod_runtime",
                "--kubeconfig",
                str(self.kubeconfig),
                "--log-dir",
                str(self.work / "pods"),
                "--prefix",
                self.prefix,
                "--network",
                self.network_kind,
                "--subnet",
                self.subnet,
                *kubelet,
            ],
            self.work / "runtime.log",
        )
        wait_for(lambda: self._node_exists(), timeout=30, message="the pod runtime's node")

    def restart_runtime(self) -> None:
        """The pod runtime SIGKILLed, its containers dying with it (a node's crash), and started again as before."""
        stop(self.runtime, signal.SIGKILL)
        self.start_runtime(*self._runtime_keep, images=self._runtime_images)

    def _node_exists(self) -> bool:
        try:
            self.core.read_node("local-node")
            return True
        except ApiException:
            return False

    def start_operator(
        self, *flags: str, kubeconfig: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        """`ray-operator run`, as the admin or with the given kubeconfig (e.g. a ServiceAccount's), with `env` added
        to its environment."""
        metrics_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        operator = start(
            [
                str(Path(sys.executable).with_name("ray-operator")),  # the console script, as its image runs it
                "run",
                "--kubeconfig",
                str(kubeconfig or self.kubeconfig),
                "--work-dir",
                str(self.work / f"operator{len(self.operators)}"),
                *OPERATOR_FLAGS,
                "--metrics-port",
                str(metrics_port),
                *flags,
            ],
            self.operator_log,
            env,
        )
        self.operators.append(operator)
        return operator

    def metric(self, name: str, **labels: str) -> float | None:
        """A sample of the newest operator's /metrics, None if it has none with exactly these labels."""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            text = response.read().decode()
        return next(
            (
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == name and sample.labels == labels
            ),
            None,
        )

    def stop_operator(self, sig: int = signal.SIGTERM) -> None:
        for operator in self.operators:
            stop(operator, sig)

    def close(self) -> None:
        self.stop_operator()
        stop(self.runtime)
        if isinstance(self.server, ApiServer):
            self.server.stop()
        self.network.remove_leftovers(self.prefix)

    # Clients.
    @property
    def client(self) -> kubernetes.client.ApiClient:
        return kubernetes.config.new_client_from_config(str(self.kubeconfig))

    @property
    def core(self) -> kubernetes.client.CoreV1Api:
        return kubernetes.client.CoreV1Api(self.client)

    @property
    def custom(self) -> Any:
        """The API of custom resources (typed as returning `object`: RayClusters are read as dicts)."""
        return kubernetes.client.CustomObjectsApi(self.client)

    def setup_crd(self) -> None:
        """The RayCluster CRD (on a shared control plane it may exist already)."""
        apply_crd(self.client, exist_ok=True)

    def namespace(self, name: str) -> None:
        try:
            self.core.create_namespace(
                kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=name))
            )
        except ApiException as error:
            if error.status != 409:
                raise

    # RayClusters.
    def create(self, raycluster: dict[str, Any]) -> dict[str, Any]:
        namespace = raycluster["metadata"]["namespace"]
        self.namespace(namespace)
        return self.custom.create_namespaced_custom_object("cluster.ray.io", "v1", namespace, "rayclusters", raycluster)

    def get(self, name: str, namespace: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object("cluster.ray.io", "v1", namespace, "rayclusters", name)

    def patch(self, name: str, namespace: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object("cluster.ray.io", "v1", namespace, "rayclusters", name, patch)

    def delete(self, name: str, namespace: str) -> None:
        self.custom.delete_namespaced_custom_object("cluster.ray.io", "v1", namespace, "rayclusters", name)

    def status(self, name: str, namespace: str) -> dict[str, Any]:
        try:
            return self.get(name, namespace).get("status") or {}
        except ApiException:
            return {}

    def wait_phase(
        self, name: str, namespace: str, phase: str, timeout: float = 120, **expected: Any
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.status(name, namespace)
            ok = status.get("phase") == phase and all(status.get(k) == v for k, v in expected.items())
            return status if ok else None

        return wait_for(
            reached,
            timeout=timeout,
            interval=0.2,
            message=f"{namespace}/{name} {phase} {expected or ''}",
            state=lambda: f"status {self.status(name, namespace)}; {self.describe(namespace)}",
        )

    def delete_every_raycluster(self) -> None:
        """What a test left: every RayCluster deleted, and waited for until its pods are gone."""
        for item in self.custom.list_cluster_custom_object("cluster.ray.io", "v1", "rayclusters")["items"]:
            try:
                self.delete(item["metadata"]["name"], item["metadata"]["namespace"])
            except ApiException:
                pass
        wait_for(
            lambda: not self.core.list_pod_for_all_namespaces(label_selector="ray-cluster-name").items,
            timeout=120,
            message="every Ray pod gone",
            state=self.describe,
        )

    def pods(self, namespace: str, selector: str = "") -> list[Any]:
        return [
            p
            for p in self.core.list_namespaced_pod(namespace, label_selector=selector).items
            if p.metadata.deletion_timestamp is None
        ]

    def workers(self, name: str, namespace: str) -> list[Any]:
        return self.pods(namespace, f"ray-cluster-name={name},ray-node-type=worker")

    def head(self, name: str, namespace: str) -> Any:
        heads = self.pods(namespace, f"ray-cluster-name={name},ray-node-type=head")
        return heads[0] if heads else None

    def ray_token(self, name: str, namespace: str) -> str | None:
        """The cluster's Ray token, from its Secret; None without one (rayAuthentication disabled)."""
        try:
            secret = self.core.read_namespaced_secret(f"{name}-ray-auth", namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return base64.b64decode((secret.data or {})["token"]).decode()

    def run_job(self, name: str, namespace: str, tasks: int, seconds: float = 2.0) -> str:
        """A job of `tasks` 1-CPU tasks on the cluster, submitted with its token (if it has one); its end status."""
        return run_ray_job(
            self.head(name, namespace).status.pod_ip, tasks, seconds, token=self.ray_token(name, namespace)
        )

    def pod_networks(self) -> int:
        """Pod networks of this test's runtime still on the machine: network namespaces, or pods' files."""
        directory = self.network.files_dir()
        names = (
            {path.name for path in directory.iterdir() if path.is_dir() and path.name.startswith(f"{self.prefix}-")}
            if directory.exists()
            else set()
        )
        if self.network_kind == "netns":
            listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
            names |= {line.split()[0] for line in listing.splitlines() if line.startswith(f"{self.prefix}-")}
        return len(names)

    def describe(self, namespace: str | None = None) -> str:
        """One line of what a failed wait needs: the Ray pods (phase, deleting), the last warnings of the pod runtime
        and of the operator."""
        try:
            listed = (
                self.core.list_namespaced_pod(namespace, label_selector="ray-cluster-name")
                if namespace
                else self.core.list_pod_for_all_namespaces(label_selector="ray-cluster-name")
            ).items
            pods = ", ".join(
                f"{p.metadata.namespace}/{p.metadata.name} {p.status.phase}"
                + (f" deleting since {p.metadata.deletion_timestamp:%H:%M:%S}" if p.metadata.deletion_timestamp else "")
                + (
                    f" last said: {self._last_lines(p)}; runtime: {self._runtime_lines(p)}"
                    if p.metadata.deletion_timestamp
                    else ""
                )
                for p in listed
            )
        except Exception as error:  # noqa: BLE001 - a description must not fail the report
            pods = f"not listed: {error}"

        def warnings(path: Path) -> str:
            lines = path.read_text(errors="replace").splitlines() if path.exists() else []
            return " | ".join([line[:200] for line in lines if " WARNING " in line or " ERROR " in line][-3:])

        return (
            f"pods [{pods or 'none'}]; runtime [{warnings(self.work / 'runtime.log')}]; "
            f"operator [{warnings(self.operator_log)}]"
        )

    def container_log(self, namespace: str, pod: str, container: str = "ray-node") -> str:
        """What a container wrote, as the pod runtime keeps it (also once its pod is gone)."""
        path = self.work / "pods" / f"{namespace}_{pod}_{container}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _last_lines(self, pod: Any) -> str:
        """The last lines a pod's first container wrote (what a pod slow to stop is doing)."""
        try:
            log = self.core.read_namespaced_pod_log(pod.metadata.name, pod.metadata.namespace, tail_lines=3)
        except Exception as error:  # noqa: BLE001 - a description must not fail the report
            return f"no log: {error}"
        return " | ".join(line[:200] for line in log.splitlines())

    def _runtime_lines(self, pod: Any) -> str:
        """The pod runtime's last lines about a pod (whether it started stopping it, with what grace)."""
        path = self.work / "runtime.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        named = f" {pod.metadata.namespace}/{pod.metadata.name}"
        return " | ".join([line[:200] for line in lines if named in line][-2:]) or "nothing"

    def autoscalers(self, namespace: str) -> dict[str, list[tuple[int, float]]]:
        """Each cluster's autoscaler processes, (pid, when it was started), in the order the operators' log says."""
        started: dict[str, list[tuple[int, float]]] = {}
        for cluster, found_namespace, pid, when in self.autoscaler_starts():
            if found_namespace == namespace:
                started.setdefault(cluster, []).append((pid, when))
        return started

    def autoscaler_starts(self) -> list[tuple[str, str, int, float]]:
        """Every autoscaler the operators' log says they started, (cluster, namespace, pid, when), in its order; the log
        is read on from where the last call stopped: it grows by Ray's autoscaler's lines, ~20 a round per cluster,
        and a chaos run checks it every second (from more than one thread)."""
        with self._log_lock:
            if not self.operator_log.exists():
                return []
            with self.operator_log.open("rb") as log:
                log.seek(self._log_read)
                complete = log.read().rpartition(b"\n")[0]
            if complete:
                self._log_read += len(complete) + 1
                for line in complete.decode(errors="replace").splitlines():
                    found = started_autoscaler(line)
                    if found:
                        self._started_autoscalers.append(found)
            return list(self._started_autoscalers)

    def live_autoscalers(self, namespace: str) -> dict[str, set[int]]:
        """Each cluster's autoscaler processes still running: a process of that pid made after the log line is another
        one (pids are reused)."""
        return {
            cluster: {pid for pid, started in found if autoscaler_alive(pid, started)}
            for cluster, found in self.autoscalers(namespace).items()
        }

    def operator_lines(self) -> list[str]:
        return self.operator_log.read_text(errors="replace").splitlines() if self.operator_log.exists() else []


JOB_REQUEST_SECONDS = 30  # for each request to a head's dashboard: Ray's client sets none, and a stalled one hangs


def job_client(head_ip: str, token: str | None = None) -> Any:
    """A JobSubmissionClient of the head's dashboard (with the cluster's token, if given), once it answers; each of
    its requests fails (an OSError) after JOB_REQUEST_SECONDS instead of waiting forever."""
    from ray.job_submission import JobSubmissionClient

    class BoundedJobClient(JobSubmissionClient):
        def _do_request(self, method: str, endpoint: str, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", JOB_REQUEST_SECONDS)
            return super()._do_request(method, endpoint, **kwargs)

    headers = {"Authorization": f"Bearer {token}"} if token else None

    def connect() -> JobSubmissionClient | None:
        try:
            return BoundedJobClient(f"http://{head_ip}:8265", headers=headers)
        except ConnectionError:
            return None  # the dashboard starts a little after the GCS

    return wait_for(connect, timeout=60, interval=0.5, message="the head's dashboard")


def run_ray_job(head_ip: str, tasks: int, seconds: float = 2.0, timeout: float = 240, token: str | None = None) -> str:
    """Submit a job of `tasks` 1-CPU tasks through the head's dashboard (with the cluster's token, if given) and
    wait for its end; returns its status."""
    from ray.job_submission import JobStatus

    client = job_client(head_ip, token)
    script = (
        f"import ray, time\nray.init()\n@ray.remote(num_cpus=1)\ndef work(i):\n    time.sleep({seconds})\n"
        f"    return i\nprint('sum', sum(ray.get([work.remote(i) for i in range({tasks})])))\n"
    )
    job = client.submit_job(entrypoint=f'python -c "{script}"', entrypoint_num_cpus=0)
    status = wait_for(
        lambda: (lambda s: s if s in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED) else None)(
            client.get_job_status(job)
        ),
        timeout=timeout,
        interval=0.5,
        message=f"Ray job {job}",
    )
    return str(status)


@contextmanager
def running_stack(
    work: Path,
    network: str = "netns",
    control_plane: ControlPlane | None = None,
    images: dict[str, Path] | None = None,
) -> Iterator[LocalKube]:
    """API server (the control plane, else the project's) with the CRD, pod runtime (pod IPs from `network`, with
    `images` besides the installed ones) and a cluster-wide operator; all but the control plane stopped on exit."""
    local = LocalKube(work, network=network, control_plane=control_plane)
    try:
        local.start_server()
        local.setup_crd()
        local.start_runtime(images=images)
        local.start_operator()
        yield local
    finally:
        local.close()


def stack_fixtures(
    directory: str, network: str = "netns", images: Callable[[], dict[str, Path]] | None = None
) -> tuple[Any, Any]:
    """A module's fixtures: `kube`, one running stack for the module on the run's control plane (its node with the
    `images()` besides the installed ones), and (autouse) the deletion after each test of every RayCluster it left,
    so a failed test leaves nothing to the next. `kube, no_cluster_left = ...`"""

    @pytest.fixture(scope="module")
    def kube(tmp_path_factory: pytest.TempPathFactory, control_plane: ControlPlane) -> Iterator[LocalKube]:
        with running_stack(
            tmp_path_factory.mktemp(directory),
            network=network,
            control_plane=control_plane,
            images=images() if images else None,
        ) as local:
            yield local

    @pytest.fixture(autouse=True)
    def no_cluster_left(kube: LocalKube) -> Iterator[None]:
        yield
        kube.delete_every_raycluster()

    return kube, no_cluster_left
