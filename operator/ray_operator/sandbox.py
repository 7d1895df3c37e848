"""`ray-operator sandbox`: Kubernetes, Ray pods and the operator on this machine, for trying it without a cluster.

It starts the project's API server, the pod runtime (each Ray pod a set of local
processes in its own namespaces, with its own IP) and `ray-operator run`, applies the
CRD and an example RayCluster from a values file, writes a kubeconfig for
kubectl, and on Ctrl-C stops all of it, leaving nothing running. This is the
only place the product uses the test API server and the pod runtime.
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import threading
import time
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from autoscaler_bridge.ray_auth import AUTH_TOKEN, submit_command
from ray_operator.bundled import crd, example
from ray_operator.helm_values import raycluster_from_values

DEFAULT_VALUES = example("cpu-only.yaml")
# The local Kubernetes of the sandbox: the distribution ray-operator-sandbox, the `sandbox` extra.
LOCAL_KUBERNETES = {"kube_apiserver": "API server", "pod_runtime": "pod runtime"}


def missing_parts() -> list[str]:
    """The parts of the local Kubernetes this installation lacks (the operator alone lacks both)."""
    return [part for module, part in LOCAL_KUBERNETES.items() if importlib.util.find_spec(module) is None]


def _die_with_the_sandbox() -> None:
    """In a child before exec: SIGTERM when the sandbox dies, even by SIGKILL (no pod runtime or operator of a
    dead sandbox lingers, holding its pod network's addresses)."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _child(argv: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as output:
        return subprocess.Popen(
            argv,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_the_sandbox,
        )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _apply(client: kubernetes.client.ApiClient, raycluster: dict[str, Any]) -> None:
    # The client takes plain dicts as bodies and hands back models (typed as models only).
    extensions: Any = kubernetes.client.ApiextensionsV1Api(client)
    extensions.create_custom_resource_definition(crd())
    core: Any = kubernetes.client.CoreV1Api(client)
    namespace = raycluster["metadata"]["namespace"]
    if namespace not in [n.metadata.name for n in core.list_namespace().items]:
        core.create_namespace({"metadata": {"name": namespace}})
    custom = kubernetes.client.CustomObjectsApi(client)
    for _ in range(50):  # the CRD's resource is served a moment after the CRD is created
        try:
            custom.create_namespaced_custom_object("cluster.ray.io", "v1", namespace, "rayclusters", raycluster)
            return
        except kubernetes.client.exceptions.ApiException as error:
            if error.status != 404:
                raise
            time.sleep(0.1)


def _report(client: kubernetes.client.ApiClient, name: str, namespace: str, stop: threading.Event, out: Any) -> None:
    """Say once when the cluster is Running, and where to reach it."""
    custom: Any = kubernetes.client.CustomObjectsApi(client)
    while not stop.wait(1.0):
        try:
            status = (
                custom.get_namespaced_custom_object("cluster.ray.io", "v1", namespace, "rayclusters", name).get(
                    "status"
                )
                or {}
            )
        except kubernetes.client.exceptions.ApiException:
            continue
        if status.get("phase") == "Running":
            ip = status.get("headPodIP")
            # Four 1-CPU tasks of 5 s: more than the head and the one minWorker hold, so workers are added.
            job = (
                "--entrypoint-num-cpus 0 -- python -c "
                '"import ray, time; ray.init(); print(len(ray.get([ray.remote(lambda: time.sleep(5)).options('
                "num_cpus=1).remote() for _ in range(4)])), 'tasks done')\""
            )
            address = f"http://{ip}:8265"
            if (status.get("rayAuthentication") or {}).get("mode") == AUTH_TOKEN:
                how = "with the cluster's token (Ray refuses jobs without it)"
                submit = submit_command(name, namespace, address, job)
            else:
                how = "(rayAuthentication: disabled, so no token)"
                submit = f"ray job submit --address {address} {job}"
            print(
                f"\nRayCluster {namespace}/{name} is Running; its head is at {ip}.\n"
                f"  Dashboard:  {address}\n"
                f"  Submit a job that scales it up, {how}:\n"
                f"    {submit}",
                file=out,
                flush=True,
            )
            return


def run_sandbox(
    values_file: Path | Traversable,
    kubeconfig_out: Path,
    name: str,
    namespace: str,
    work_dir: Path,
    network: str,
    subnet: str | None,
    operator_flags: list[str],
) -> None:
    from kube_apiserver.server import ApiServer

    work_dir.mkdir(parents=True, exist_ok=True)
    server = ApiServer().start()
    server.write_kubeconfig(kubeconfig_out)
    client = kubernetes.config.new_client_from_config(str(kubeconfig_out))
    runtime = _child(
        [
            sys.executable,
            "-m",
            "pod_runtime",
            "--kubeconfig",
            str(kubeconfig_out),
            "--log-dir",
            str(work_dir / "pods"),
            "--prefix",
            "rsbx",
            "--network",
            network,
            *(["--subnet", subnet] if subnet else []),
        ],
        work_dir / "pod-runtime.log",
    )
    operator = _child(
        [
            sys.executable,
            "-m",
            "ray_operator",
            "run",
            "--kubeconfig",
            str(kubeconfig_out),
            "--work-dir",
            str(work_dir / "operator"),
            "--health-port",
            "0",
            "--metrics-port",
            "0",
            *operator_flags,
        ],
        work_dir / "operator.log",
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        raycluster = raycluster_from_values(yaml.safe_load(values_file.read_text()), name, namespace)
        _apply(client, raycluster)
        print(
            f"Sandbox up: Kubernetes API at {server.url}, RayCluster {namespace}/{name} from {values_file}.\n"
            f"  export KUBECONFIG={kubeconfig_out}\n"
            f"  kubectl -n {namespace} get rayclusters\n"
            f"  kubectl -n {namespace} get pods -o wide\n"
            f"Logs: {work_dir}/operator.log (grep '{name},{namespace}'), {work_dir}/pod-runtime.log, "
            f"{work_dir}/pods/.\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        reporter = threading.Thread(target=_report, args=(client, name, namespace, stop, sys.stdout), daemon=True)
        reporter.start()
        while not stop.wait(1.0):
            for part, process, log in (
                ("operator", operator, "operator.log"),
                ("pod runtime", runtime, "pod-runtime.log"),
            ):
                if process.poll() is not None:
                    last = (work_dir / log).read_text(errors="replace").strip().splitlines()[-1:]
                    print(
                        f"the {part} exited ({process.returncode}): {' '.join(last)} (see {work_dir / log})",
                        file=sys.stderr,
                    )
                    stop.set()
    finally:
        print("stopping: operator, Ray pods, API server", flush=True)
        _stop(operator)
        _stop(runtime)
        server.stop()
        print("stopped; nothing is left running", flush=True)
