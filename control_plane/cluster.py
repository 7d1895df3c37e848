"""Where the real control plane is started: certificates, etcd, kube-apiserver (RBAC, a static admin token,
ServiceAccount token signing), kube-controller-manager and kube-scheduler, each a process on loopback with its
log in the work directory. A step that fails raises one ControlPlaneError naming the step, with its log's tail."""

from __future__ import annotations

import ipaddress
import json
import secrets
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from control_plane.build import ControlPlaneError, binaries
from control_plane.processes import free_port, start, stop
from kube_apiserver.kubeconfig import write_kubeconfig
from kube_apiserver.tls import make_certificates

SERVICE_CIDR = "10.96.0.0/16"  # ClusterIPs are allocated from it; no traffic goes there
ISSUER = "https://kubernetes.default.svc.cluster.local"
START_TIMEOUT = 90.0
# Stopped in this order, clients before the servers they talk to (a kube-scheduler without its API server waits 30 s
# to give up its lease), whatever the order they were (re)started in.
STOP_ORDER = ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")
# What the tests rely on: namespaces and owners cleaned up, ServiceAccounts and their CA, Deployments making pods,
# Nodes judged by their Lease (and the not-ready taint lifted from a new Node), evictions judged by disruption budgets.
ALL_CONTROLLERS = [
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "deployment-controller",
    "replicaset-controller",
    "node-lifecycle-controller",
    "disruption-controller",  # PodDisruptionBudgets' status, which evictions are judged by
]


def _certificates(directory: Path, addresses: list[str]) -> None:
    """ca.crt, apiserver.crt/.key (for loopback, the in-cluster names, the `kubernetes` Service's IP and
    `addresses`), and the ServiceAccount signing key sa.key/sa.pub."""
    service_ip = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
    certificates = make_certificates("127.0.0.1", service_ip, *addresses)
    (directory / "ca.crt").write_bytes(certificates.ca_pem)
    (directory / "apiserver.crt").write_bytes(certificates.cert_pem)
    (directory / "apiserver.key").write_bytes(certificates.key_pem)
    signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (directory / "sa.key").write_bytes(
        signing.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (directory / "sa.pub").write_bytes(
        signing.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


class ControlPlane:
    """One control plane in `work`. `addresses`: more IPs the API server's certificate names (e.g. the pod
    network's gateway, where pods reach the API server); `controllers`: those kube-controller-manager runs;
    `scheduler`: whether kube-scheduler runs; `apiserver_flags`: more flags for kube-apiserver."""

    def __init__(
        self,
        work: Path,
        addresses: list[str] | None = None,
        controllers: list[str] | None = None,
        scheduler: bool = True,
        apiserver_flags: list[str] | None = None,
    ) -> None:
        self.work = work
        self.addresses = addresses or []
        self.controllers = ALL_CONTROLLERS if controllers is None else controllers
        self.scheduler = scheduler
        self.apiserver_flags = apiserver_flags or []
        self.admin_token = secrets.token_hex(16)
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.kubeconfig = work / "admin.kubeconfig"
        self.ca_pem = b""
        self.processes: dict[str, subprocess.Popen] = {}
        self._binaries: dict[str, Path] = {}
        self._etcd_url = ""

    # Lifecycle.
    def start(self) -> ControlPlane:
        try:
            self._binaries = binaries()
            self.work.mkdir(parents=True, exist_ok=True)
            _certificates(self.work, self.addresses)
            self.ca_pem = (self.work / "ca.crt").read_bytes()
            (self.work / "tokens.csv").write_text(f'{self.admin_token},admin,admin,"system:masters"\n')
            self.write_kubeconfig(self.kubeconfig)
            self._start_etcd()
            self._start_apiserver()
            self._spawn("kube-controller-manager", self._flags("kube-controller-manager"))
            if self.scheduler:
                self._spawn("kube-scheduler", self._flags("kube-scheduler"))
            self._wait(
                "kube-controller-manager's first work (ServiceAccount default, kube-root-ca.crt)",
                self._controllers_ready,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for name in STOP_ORDER:
            self._stop(name)

    def restart_apiserver(self, down_for: float = 0.0) -> None:
        """Stop kube-apiserver (clients see their connections drop), wait `down_for` s, start it on the same port."""
        self._stop("kube-apiserver")
        time.sleep(down_for)
        self._start_apiserver()

    def _start_apiserver(self) -> None:
        self._spawn("kube-apiserver", self._flags("kube-apiserver"))
        self._wait("kube-apiserver /readyz", lambda: self.get("/readyz") == "ok")

    def write_kubeconfig(self, path: Path, token: str | None = None, namespace: str = "default") -> Path:
        """A kubeconfig for this control plane: the admin's (system:masters), or for `token`."""
        return write_kubeconfig(path, self.url, token or self.admin_token, namespace, self.ca_pem)

    def compact(self, revision: int) -> None:
        """etcd's history compacted up to `revision` (a resourceVersion), as kube-apiserver does every 5 minutes."""
        request = urllib.request.Request(
            f"{self._etcd_url}/v3/kv/compaction",
            method="POST",
            data=json.dumps({"revision": str(revision), "physical": True}).encode(),
        )
        with urllib.request.urlopen(request, timeout=10):
            pass

    # Processes.
    def _spawn(self, name: str, flags: list[str]) -> None:
        self.processes[name] = start([str(self._binaries[name]), *flags], self.work / f"{name}.log")

    def _stop(self, name: str) -> None:
        stop(self.processes.pop(name, None), timeout=30)

    def _wait(self, step: str, ready, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise ControlPlaneError(
                        f"control plane: {name} exited ({process.returncode}) while waiting for "
                        f"{step}:\n{self._log_tail(name)}"
                    )
            try:
                if ready():
                    return
            except (OSError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {name}\n{self._log_tail(name)}" for name in self.processes)
                raise ControlPlaneError(f"control plane: {step} not ready after {timeout:.0f} s\n{logs}")
            time.sleep(0.2)

    def _log_tail(self, name: str, lines: int = 20) -> str:
        path = self.work / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"

    # Steps.
    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self._etcd_url = f"http://127.0.0.1:{client}"
        self._spawn(
            "etcd",
            [
                "--name",
                "default",
                "--data-dir",
                str(self.work / "etcd"),
                "--log-level",
                "warn",
                "--listen-client-urls",
                self._etcd_url,
                "--advertise-client-urls",
                self._etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
            ],
        )

        def healthy() -> bool:
            with urllib.request.urlopen(f"{self._etcd_url}/health", timeout=2) as response:
                return json.loads(response.read()).get("health") == "true"

        self._wait("etcd /health", healthy)

    def _flags(self, component: str) -> list[str]:
        work = self.work
        if component == "kube-apiserver":
            return [
                "--etcd-servers",
                self._etcd_url,
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
                "--secure-port",
                str(self.port),
                "--tls-cert-file",
                str(work / "apiserver.crt"),
                "--tls-private-key-file",
                str(work / "apiserver.key"),
                "--client-ca-file",
                str(work / "ca.crt"),
                "--token-auth-file",
                str(work / "tokens.csv"),
                "--authorization-mode",
                "RBAC",
                "--service-account-issuer",
                ISSUER,
                "--service-account-key-file",
                str(work / "sa.pub"),
                "--service-account-signing-key-file",
                str(work / "sa.key"),
                "--service-cluster-ip-range",
                SERVICE_CIDR,
                "--endpoint-reconciler-type",
                "none",
                "--allow-privileged=true",
                "--profiling=false",
                "--cert-dir",
                str(work / "certs"),
                *self.apiserver_flags,
            ]
        common = [
            "--kubeconfig",
            str(self.kubeconfig),
            "--leader-elect=false",
            "--secure-port",
            "0",
            "--profiling=false",
        ]
        if component == "kube-controller-manager":
            return [
                *common,
                "--controllers",
                ",".join(self.controllers),
                "--use-service-account-credentials",
                "--service-account-private-key-file",
                str(work / "sa.key"),
                "--root-ca-file",
                str(work / "ca.crt"),
            ]
        return common

    def get(self, path: str) -> str:
        """GET `path` of kube-apiserver as the admin: its body (an error's too)."""
        context = ssl.create_default_context(cadata=self.ca_pem.decode())
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.admin_token}"})
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as response:
                return response.read().decode()
        except urllib.error.HTTPError as error:
            return error.read().decode(errors="replace")

    def _controllers_ready(self) -> bool:
        """What the controllers that make objects have made in `default` (the others show no sign of being up)."""
        if "serviceaccount-controller" in self.controllers:
            if (
                json.loads(self.get("/api/v1/namespaces/default/serviceaccounts/default")).get("kind")
                != "ServiceAccount"
            ):
                return False
        if "root-ca-certificate-publisher-controller" in self.controllers:
            root_ca = json.loads(self.get("/api/v1/namespaces/default/configmaps/kube-root-ca.crt"))
            return "ca.crt" in (root_ca.get("data") or {})
        return True
