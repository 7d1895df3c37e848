"""The `ray-operator` command line."""

from __future__ import annotations

import os
import resource
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import yaml

from autoscaler_bridge.cluster_config import autoscaler_config
from autoscaler_bridge.names import DEFAULT_MAX_PENDING_PODS, DEFAULT_PENDING_TIMEOUT_SECONDS
from autoscaler_bridge.validation import InvalidRayCluster
from ray_operator import __version__, logs
from ray_operator.helm_values import is_values_file, raycluster_from_values

EXIT_INVALID = 2
RECURSION_LIMIT = 20_000  # JSON nesting the operator decodes (kube-apiserver's own limit is 10,000 levels)
MAX_SOCKET_PATH = 107  # bytes of a Unix socket's path (Linux's sun_path, less its terminating NUL)
HEALTH_HOST = "0.0.0.0"  # where /healthz and /readyz are served, for the kubelet's probes


def _rayclusters(path: Path, name: str, namespace: str | None) -> Iterator[dict[str, Any]]:
    """The RayClusters of a manifest file, or the one a Helm values file renders to."""
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    if len(documents) == 1 and is_values_file(documents[0]):
        yield raycluster_from_values(documents[0], name, namespace)
        return
    found = False
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == "RayCluster":
            found = True
            if namespace and isinstance(document.setdefault("metadata", {}), dict):
                document["metadata"]["namespace"] = namespace
            yield document
    if not found:
        raise ValueError("no RayCluster in it (nor a Helm values file with a podTypes map)")


def pending_bound_options(command: Callable[..., None]) -> Callable[..., None]:
    """The bound on Pending pods, a knob of `run` and of `render` (which prints what `run` writes)."""
    command = click.option(
        "--pending-timeout",
        type=float,
        default=DEFAULT_PENDING_TIMEOUT_SECONDS,
        show_default=True,
        help="No more pods of a podType are launched while one has been Pending this long (seconds).",
    )(command)
    return click.option(
        "--max-pending-pods",
        type=int,
        default=DEFAULT_MAX_PENDING_PODS,
        show_default=True,
        help="No more pods of a podType are launched while this many of them are Pending.",
    )(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ray-operator")
def main() -> None:
    """The Ray operator for Kubernetes: one Ray autoscaler per RayCluster."""


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--name",
    default="example-cluster",
    show_default=True,
    help="Release name to render a Helm values file as (the RayCluster is named after it).",
)
@click.option("--namespace", default=None, help="Namespace to render the RayCluster(s) in.")
@pending_bound_options
def render(file: Path, name: str, namespace: str | None, max_pending_pods: int, pending_timeout: float) -> None:
    """Print the Ray autoscaler config a RayCluster manifest (or a Helm values file) becomes: what `ray-operator
    run` (with the same knobs) writes for its autoscaler.

    Exits 2 listing every problem when a RayCluster cannot be run.
    """
    try:
        rayclusters = list(_rayclusters(file, name, namespace))
    except (yaml.YAMLError, ValueError) as error:
        click.echo(f"{file}: {error}", err=True)
        sys.exit(EXIT_INVALID)
    except RecursionError:
        click.echo(f"{file}: nested too deeply to be read", err=True)
        sys.exit(EXIT_INVALID)
    configs, failed = [], False
    for raycluster in rayclusters:
        metadata = raycluster.get("metadata")
        label = str(metadata.get("name", "<unnamed>"))[:60] if isinstance(metadata, dict) else "<unnamed>"
        try:
            configs.append(autoscaler_config(raycluster, max_pending_pods, pending_timeout))
        except InvalidRayCluster as invalid:
            failed = True
            click.echo(f"{file}: RayCluster {label} is invalid:", err=True)
            for problem in invalid.problems:
                click.echo(f"  - {problem}", err=True)
    if failed:
        sys.exit(EXIT_INVALID)
    click.echo(yaml.safe_dump_all(configs, sort_keys=False), nl=False)


@main.command()
@click.option(
    "--namespace",
    envvar="RAY_OPERATOR_POD_NAMESPACE",
    default=None,
    help="Manage RayClusters of this namespace only (default: every namespace). "
    "Also taken from RAY_OPERATOR_POD_NAMESPACE, as the legacy operator did.",
)
@click.option(
    "--identity",
    default=None,
    help="This operator among operators, in its Lease and in status.operator of the clusters it runs "
    "(default: <host>-<pid>; in a pod, the pod's name and pid 1, so a restarted container keeps its clusters).",
)
@click.option(
    "--lease-namespace",
    envvar="RAY_OPERATOR_LEASE_NAMESPACE",
    default=None,
    help="Namespace of this operator's Lease (default: --namespace, else default). "
    "Also taken from RAY_OPERATOR_LEASE_NAMESPACE (the chart sets the operator pod's namespace).",
)
@click.option(
    "--group",
    envvar="RAY_OPERATOR_GROUP",
    default="ray-operator",
    show_default=True,
    help="The replicas this operator shares RayClusters with: the operators with this group and lease namespace "
    "(each cluster runs on one of them). Also taken from RAY_OPERATOR_GROUP (the chart sets its release's name).",
)
@click.option(
    "--kubeconfig",
    type=click.Path(exists=True, dir_okay=False),
    envvar="KUBECONFIG",
    default=None,
    help="Kubeconfig to use (default: the pod's service account in a cluster, else ~/.kube/config).",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/tmp/ray-operator"),
    show_default=True,
    help="Where each cluster's autoscaler config and heartbeat are kept.",
)
@click.option(
    "--resync-seconds",
    type=float,
    default=300.0,
    show_default=True,
    help="How often each cluster is reconciled though nothing it watches changed (what only time shows, such as "
    "backoffs and the autoscaler's health, is looked at when due).",
)
@click.option(
    "--reconcile-workers",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Threads reconciling clusters, however many clusters there are (one cluster is never on two at once).",
)
@click.option(
    "--autoscaler-interval",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Seconds between two rounds of a cluster's autoscaler (Ray takes whole seconds).",
)
@click.option(
    "--autoscaler-status-interval",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds between two writes of a busy cluster's status.autoscaler (a steady cluster's is not rewritten).",
)
@click.option(
    "--stall-rounds",
    type=int,
    default=12,
    show_default=True,
    help="An autoscaler that made no round for this many intervals is restarted and counted as failed.",
)
@click.option(
    "--restart-backoff",
    type=float,
    default=2.0,
    show_default=True,
    help="Delay before restarting a failed autoscaler (or head); doubles with each failure in a row, half of it "
    "drawn at random so that clusters that failed together restart apart.",
)
@click.option("--max-restart-backoff", type=float, default=60.0, show_default=True, help="Upper bound of that delay.")
@pending_bound_options
@click.option(
    "--max-starting-pods",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Ray pods (heads and workers) starting at once on one node, whichever of the operator's replicas or "
    "autoscalers made them (made less than 5 minutes ago, their Ray node not joined yet; a pod not placed yet "
    "counts on every node); past it a cluster waits for its head, an autoscaler launches its workers later. Heads "
    "take all places but one, which is kept for the workers of clusters running already. Many Ray pods starting "
    "on one node overload it, and each one's start then fails. 0: no bound.",
)
@click.option(
    "--monitor-memory-limit",
    type=int,
    default=1024,
    show_default=True,
    help="Memory (MiB) each autoscaler process may have, enforced by the kernel (RLIMIT_DATA): one that needs more "
    "fails alone, and is counted and restarted.",
)
@click.option(
    "--health-port",
    type=int,
    default=8080,
    show_default=True,
    help="Port of the liveness endpoint /healthz and the readiness endpoint /readyz (0: none).",
)
@click.option(
    "--metrics-port",
    type=int,
    default=8081,
    show_default=True,
    help="Port of the Prometheus endpoint /metrics (0: none).",
)
@click.option("--metrics-host", default="0.0.0.0", show_default=True, help="Address the /metrics endpoint listens on.")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default=logs.DEFAULT_LEVEL,
    show_default=True,
    help="Least severity of the lines logged (Ray's autoscaler's too).",
)
def run(
    namespace: str | None,
    identity: str | None,
    lease_namespace: str | None,
    group: str,
    kubeconfig: str | None,
    work_dir: Path,
    resync_seconds: float,
    reconcile_workers: int,
    autoscaler_interval: int,
    autoscaler_status_interval: float,
    stall_rounds: int,
    restart_backoff: float,
    max_restart_backoff: float,
    max_pending_pods: int,
    pending_timeout: float,
    max_starting_pods: int,
    monitor_memory_limit: int,
    health_port: int,
    metrics_port: int,
    metrics_host: str,
    log_level: str,
) -> None:
    """Run the operator: one Ray autoscaler per RayCluster, until SIGTERM.

    Stopping the operator stops the autoscalers and leaves every Ray pod running;
    a restarted operator adopts the clusters and their pods as they are.
    """
    from autoscaler_bridge import crash_point
    from autoscaler_bridge.pod_channel import served
    from ray_operator import health, metrics
    from ray_operator.manager import ClusterManager
    from ray_operator.membership import default_identity
    from ray_operator.settings import Settings

    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig
    # A RayCluster may nest as deep as kube-apiserver takes (its preserved podConfig fields): it must decode here,
    # in the watch that every cluster shares, and then be refused as too deep (validation), not end the watch.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), RECURSION_LIMIT))
    # Each running autoscaler holds a few connections to the operator (autoscaler_bridge.pod_channel) besides its
    # process's pipes: a container's usual soft limit of 1,024 open files would cap a replica at a few hundred.
    _, most_files = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (most_files, most_files))
    logs.configure(log_level)
    crash_point.arm()
    settings = Settings(
        namespace=namespace,
        work_dir=work_dir,
        resync_seconds=resync_seconds,
        reconcile_workers=reconcile_workers,
        autoscaler_interval_seconds=autoscaler_interval,
        autoscaler_status_seconds=autoscaler_status_interval,
        stall_rounds=stall_rounds,
        restart_backoff_seconds=restart_backoff,
        max_restart_backoff_seconds=max_restart_backoff,
        max_pending_pods=max_pending_pods,
        pending_timeout_seconds=pending_timeout,
        max_starting_pods=max_starting_pods,
        monitor_memory_limit_mb=monitor_memory_limit,
        log_level=log_level.upper(),
        identity=identity or default_identity(),
        lease_namespace=lease_namespace or namespace or "default",
        group=group,
    )
    for host, port, endpoint, flag in [
        (metrics_host, metrics_port, "/metrics", "--metrics-port"),
        (HEALTH_HOST, health_port, "/healthz", "--health-port"),
    ]:
        if port:
            _check_can_listen(host, port, endpoint, flag)
    if len(os.fsencode(settings.pod_service_path)) > MAX_SOCKET_PATH:
        raise click.ClickException(
            f"--work-dir {work_dir} is too long: its autoscalers' socket ({settings.pod_service_path}) may have at "
            f"most {MAX_SOCKET_PATH} bytes"
        )
    if served(settings.pod_service_path):
        raise click.ClickException(
            f"{settings.work_dir} is the work dir of another operator that runs (its autoscalers' socket answers): "
            "give each operator a --work-dir of its own"
        )
    stopping = threading.Event()
    manager: ClusterManager | None = None

    def on_signal(*_: object) -> None:
        stopping.set()
        if manager is None:  # still starting, maybe waiting for an API server that does not answer: nothing to stop
            raise SystemExit(0)  # in order yet, and an exit now is no worse than the SIGKILL that comes at the grace

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    manager = ClusterManager(settings)
    if metrics_port:
        metrics.serve(metrics_host, metrics_port, manager.statuses)
    if health_port:
        health.serve(HEALTH_HOST, health_port, manager.health, manager.ready)
    stopping.wait()
    manager.shutdown()


def _check_can_listen(host: str, port: int, endpoint: str, flag: str) -> None:
    """A clear error now, rather than a traceback once the operator has started, when `port` is taken."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the HTTP servers bind theirs
        try:
            probe.bind((host, port))
        except OSError as error:
            raise click.ClickException(
                f"cannot serve {endpoint} on {host}:{port}: {error.strerror} ({flag}: another port, or 0 for none)"
            ) from None


@main.command()
@click.option(
    "--values",
    "values_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Helm values file of the example RayCluster (default: values/cpu-only.yaml).",
)
@click.option(
    "--kubeconfig-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the kubeconfig for kubectl (default: a file in the work directory, printed at start).",
)
@click.option("--name", default="example-cluster", show_default=True, help="Name of the example RayCluster.")
@click.option("--namespace", default="ray", show_default=True, help="Its namespace.")
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/tmp/ray-operator-sandbox"),
    show_default=True,
    help="Logs and state of the sandbox.",
)
@click.option(
    "--network",
    type=click.Choice(["auto", "netns", "loopback"]),
    default="auto",
    show_default=True,
    help="Pod IPs: network namespaces (root) or loopback addresses (any user); auto picks by user.",
)
@click.option(
    "--subnet", default=None, help="Addresses of the Ray pods (default 10.244.0.0/16, or 127.244.0.0/16 for loopback)."
)
def sandbox(
    values_file: Path | None,
    kubeconfig_out: Path | None,
    name: str,
    namespace: str,
    work_dir: Path,
    network: str,
    subnet: str | None,
) -> None:
    """Run Kubernetes, Ray pods and the operator on this machine, with an example RayCluster.

    Ctrl-C stops everything and leaves nothing running.
    """
    from ray_operator.sandbox import DEFAULT_VALUES, missing_parts, run_sandbox

    if missing := missing_parts():
        raise click.ClickException(
            f"the sandbox's {' and '.join(missing)} are not installed: they come with "
            "pip install 'ray-operator[sandbox]' (from a checkout: pip install '.[sandbox]')"
        )
    run_sandbox(
        values_file or DEFAULT_VALUES,
        kubeconfig_out or work_dir / "kubeconfig",
        name,
        namespace,
        work_dir,
        network,
        subnet,
        ["--autoscaler-interval", "2"],
    )
