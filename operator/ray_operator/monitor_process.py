"""One Ray autoscaler (monitor) per cluster, each in a process of its own.

The child runs Ray's own `Monitor` (and so `StandardAutoscaler`) on the
cluster's config file, re-read every round, so a spec change that only
reconfigures the autoscaler needs no restart. It never retries a failed round
itself (`retry_on_failure=False`): a failure ends the process and the operator
counts and restarts it. No round starts once the operator's Lease is past its
deadline (autoscaler_bridge.fence): the process ends itself. Every round it
touches a heartbeat file, so a monitor that stops making progress is seen too,
and writes what it sees (resource usage,
pending demand, pending and failed launches) and the decisions it made (Ray's
event summaries: nodes added, removed, launches failed) to two files beside it,
which the operator turns into the RayCluster's status.autoscaler and Events. Its scale-down drains
idle nodes first (autoscaler_bridge.draining_autoscaler).

Children are forked from a forkserver that has already imported Ray's
autoscaler and the node provider, and made what they all use
(ray_operator.monitor_forkserver): each costs a few MiB instead of a fresh
interpreter's ~40, and no child inherits the operator's threads or gRPC state.
"""

from __future__ import annotations

import fcntl
import gc
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import resource
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoscaler_bridge.fence import Fenced, fenced
from autoscaler_bridge.ray_auth import AUTH_DISABLED, AUTH_TOKEN, FIRST_RAY_WITH_TOKEN_AUTH, ray_lacks_token_auth
from ray_operator import logs

# What every monitor imports, imported once in the forkserver. First what the operator's main script imports:
# multiprocessing runs the main script (the `ray-operator` console script, as the image starts it) again in every
# child, and its import of ray_operator.cli (with click) would cost each monitor ~2.4 MB of its own. (A preloaded
# "__main__" would spare the run, but Python 3.11's forkserver never learns the main script's path.)
PRELOAD = [
    "ray_operator.cli",
    "ray.autoscaler._private.monitor",
    "autoscaler_bridge.node_provider",
    "autoscaler_bridge.draining_autoscaler",
    "ray_operator.monitor_process",
    "ray_operator.monitor_forkserver",  # last: prepares, with all of the above imported, what the monitors share
]
EXIT_UNSUPPORTED_RAY = 3
EXIT_NO_TOKEN_AUTH = 4  # the cluster asks for token authentication; its Ray has none
EXIT_OUT_OF_MEMORY = 5  # the monitor reached its memory limit
EXIT_FENCED = 6  # the operator's Lease lapsed: the monitor stopped itself (autoscaler_bridge.fence)
MAX_ERROR = 500  # characters of a failed autoscaler's exception kept for the RayCluster's status
# Ray versions whose clusters this operator's autoscaler was tested with (major.minor, inclusive).
SUPPORTED_RAY = ((2, 50), (2, 60))

_context: Any = None


def _mp() -> Any:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def prestart() -> None:
    """Start the forkserver (and its imports, seconds of them) now, so that the first autoscaler a replica starts,
    e.g. for a cluster handed over to it, starts at once."""
    from multiprocessing import forkserver

    _mp()
    forkserver.ensure_running()


@dataclass(frozen=True)
class MonitorSpec:
    cluster: str
    namespace: str
    gcs_address: str
    config_path: Path
    heartbeat_path: Path
    log_level: str = logs.DEFAULT_LEVEL
    auth_mode: str = AUTH_DISABLED  # the head's Ray authentication mode
    auth_token: str | None = field(default=None, repr=False)
    memory_limit_bytes: int | None = None  # of the monitor's data (heap, stacks), enforced by the kernel
    fence_path: Path | None = None  # the operator's Lease deadline (autoscaler_bridge.fence): past it, no round

    @property
    def error_path(self) -> Path:
        return self.heartbeat_path.with_suffix(".error")

    @property
    def view_path(self) -> Path:
        """The last round's view: JSON {usage, demand, pending_launches, failed_nodes}."""
        return self.heartbeat_path.with_suffix(".view.json")

    @property
    def events_path(self) -> Path:
        """The decisions of the rounds since the operator last read them, each with its round's demand, one JSON
        object per line: appended by the monitor, emptied by the operator as it reads them."""
        return self.heartbeat_path.with_suffix(".events.jsonl")


def _major_minor(version: str) -> tuple[int, int] | None:
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return None
    return major, minor


def unsupported_ray_version(version: str) -> str | None:
    """Why a cluster's Ray version cannot be autoscaled by this operator, or None."""
    found = _major_minor(version)
    if found is None:
        return f"the cluster runs Ray {version!r}, which this operator cannot read"
    low, high = SUPPORTED_RAY
    if low <= found <= high:
        return None
    return (
        f"the cluster runs Ray {version}; this operator's autoscaler supports Ray "
        f"{low[0]}.{low[1]} to {high[0]}.{high[1]}: use an image in that range"
    )


def missing_token_auth(version: str, auth_mode: str) -> str | None:
    """Why a cluster that asks for token authentication cannot have it with its Ray version, or None."""
    found = _major_minor(version)
    if auth_mode != AUTH_TOKEN or found is None or not ray_lacks_token_auth(found):
        return None
    first = ".".join(map(str, FIRST_RAY_WITH_TOKEN_AUTH))
    return (
        f"the cluster runs Ray {version}, which has no token authentication (first in Ray {first}): its head would "
        f"run anyone's jobs, so its pods are removed. Use an image with Ray {first} or newer, or set "
        "rayAuthentication: disabled"
    )


def _authenticate_as(spec: MonitorSpec) -> None:
    """Ray's authentication for this process, set explicitly from the spec: never from a ~/.ray/auth_token that
    happens to be on the machine. Ray's config is read again, as Ray does when it turns token mode on itself."""
    from ray._raylet import Config  # type: ignore[attr-defined]  # a Cython module without stubs

    os.environ["RAY_AUTH_MODE"] = spec.auth_mode
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    os.environ.pop("RAY_AUTH_TOKEN", None)
    if spec.auth_token:
        os.environ["RAY_AUTH_TOKEN"] = spec.auth_token
    Config.initialize("")


def _cluster_ray_version(gcs_address: str, timeout: float = 60.0) -> str | None:
    """The Ray version the head wrote into its GCS; None if it has not within `timeout` (the GCS answers
    a moment before the head writes it)."""
    import time

    from ray._raylet import GcsClient  # type: ignore[attr-defined]  # a Cython module without stubs

    client = GcsClient(address=gcs_address)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metadata = client.internal_kv_get(b"CLUSTER_METADATA", b"cluster")
        if metadata:
            return json.loads(metadata).get("ray_version", "unknown")
        time.sleep(0.5)
    return None


def _write_view(spec: MonitorSpec, load: Any, autoscaler: Any, decisions: list[str]) -> None:
    view = {
        "usage": {name: list(pair) for name, pair in load.usage.items()},
        "demand": [[shape, count] for shape, count in [*load.resource_demand, *load.pg_demand, *load.request_demand]],
        "pending_launches": dict(autoscaler.pending_launches) if autoscaler else {},
        "failed_nodes": [list(node) for node in autoscaler.failed_nodes] if autoscaler else [],
    }
    partial = spec.view_path.with_suffix(".tmp")
    partial.write_text(json.dumps(view, sort_keys=True, default=str))
    os.replace(partial, spec.view_path)
    if decisions:
        with open(spec.events_path, "a") as events:
            fcntl.flock(events, fcntl.LOCK_EX)  # the operator empties the file as it reads it, under the same lock
            events.writelines(
                json.dumps({"decision": decision, "demand": view["demand"]}, default=str) + "\n"
                for decision in decisions
            )


def _die_with_parent() -> None:
    """SIGKILL when the forkserver dies, which it does when the operator dies (even by SIGKILL):
    a monitor must never outlive its operator and autoscale beside the next one's.

    The forkserver learns of its operator's death as the end of a pipe, whose write end multiprocessing hands to
    every child too (for children that start processes of their own): while a monitor held it, the forkserver, and
    so every monitor, outlived a killed operator. A monitor starts no processes: it closes its copy."""
    import ctypes
    from multiprocessing import forkserver

    server: Any = getattr(forkserver, "_forkserver")  # noqa: B009 - multiprocessing's private state
    if server._forkserver_alive_fd is not None:
        os.close(server._forkserver_alive_fd)
        server._forkserver_alive_fd = None
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:
        os._exit(1)


def run_monitor(spec: MonitorSpec) -> None:
    """The child process: Ray's Monitor on the cluster's config, with a heartbeat."""
    # The objects inherited from the forkserver move to gc's permanent generation: collections no longer write
    # to them, so their pages stay shared with the forkserver instead of being copied into every monitor.
    gc.freeze()
    _die_with_parent()
    try:
        _monitor(spec)
    except MemoryError:  # nothing more can be allocated: the exit code says why
        os._exit(EXIT_OUT_OF_MEMORY)


def _monitor(spec: MonitorSpec) -> None:
    if spec.memory_limit_bytes is not None:
        # The kernel refuses this process more private writable memory than the limit (RLIMIT_DATA counts the heap,
        # anonymous mappings and thread stacks): a runaway autoscaler fails alone, and at once, instead of growing
        # until the operator's pod, and every autoscaler in it, is killed.
        resource.setrlimit(resource.RLIMIT_DATA, (spec.memory_limit_bytes, spec.memory_limit_bytes))
    logs.configure(spec.log_level, fixed_prefix=logs.cluster_prefix(spec.cluster, spec.namespace))
    # Ray gives its loggers a handler of their own: route them through ours, so each line has the prefix.
    ray_logger = logging.getLogger("ray")
    ray_logger.handlers.clear()
    ray_logger.propagate = True
    log = logging.getLogger("ray_operator.monitor")
    try:
        _authenticate_as(spec)
        _autoscale(spec, log)
    except Exception as error:  # e.g. the head refused its token, or cannot be reached: the operator quotes it
        spec.error_path.write_text(f"{type(error).__name__}: {error}"[:MAX_ERROR])
        raise


def _autoscale(spec: MonitorSpec, log: Any) -> None:
    """Check the cluster's Ray, then run Ray's Monitor on the cluster's config until it fails or is stopped."""
    from ray.autoscaler._private.monitor import Monitor

    from autoscaler_bridge.draining_autoscaler import DrainingAutoscaler

    version = _cluster_ray_version(spec.gcs_address)
    if version is None:  # an ordinary failure: counted, and retried with backoff
        raise RuntimeError("the head's GCS has no cluster metadata: not a healthy Ray head")
    for reason, code in (
        (unsupported_ray_version(version), EXIT_UNSUPPORTED_RAY),
        (missing_token_auth(version, spec.auth_mode), EXIT_NO_TOKEN_AUTH),
    ):
        if reason:
            log.error("not autoscaling: %s", reason)
            spec.error_path.write_text(reason)
            os._exit(code)

    def read_config() -> dict[str, Any]:
        return json.loads(spec.config_path.read_text())

    class HeartbeatMonitor(Monitor):
        def _signal_handler(self, sig: int, frame: Any) -> None:
            """Stopped by the operator (SIGTERM): at once, and quietly. Ray's own handler tells every driver that "the
            autoscaler failed", which a cluster moving to another replica is not."""
            os._exit(128 + sig)

        def _handle_failure(self, error: str) -> None:
            """The loop ended by an exception. If it is this operator's Lease lapsing (met by a request to an operator
            that is paused or cut off, rounds after rounds), the autoscaler stops quietly: Ray's own handler would
            tell every driver that "the autoscaler failed", which a cluster moving to another replica is not."""
            raised = sys.exc_info()[1]
            if isinstance(raised, Fenced):
                log.warning("stopping: %s", raised)
                os._exit(EXIT_FENCED)
            super()._handle_failure(error)

        def _initialize_autoscaler(self) -> None:
            """Ray's autoscaler, whose scale-down drains idle nodes instead of stopping their raylets."""
            super()._initialize_autoscaler()
            autoscaler: Any = self.autoscaler
            autoscaler.__class__ = DrainingAutoscaler

        def update_load_metrics(self) -> None:
            """A round's start: none starts once the operator's Lease is past its deadline."""
            if fenced(spec.fence_path):
                log.warning("stopping: the operator's Lease is past its deadline (paused or cut off)")
                os._exit(EXIT_FENCED)
            super().update_load_metrics()
            spec.heartbeat_path.touch()

        def emit_metrics(self, load_metrics_summary: Any, autoscaler_summary: Any, node_types: Any) -> None:
            """Called by each round once the autoscaler has updated, with its summaries and before its event
            summary is logged and cleared: the moment to hand the operator what it saw and decided."""
            super().emit_metrics(load_metrics_summary, autoscaler_summary, node_types)
            _write_view(spec, load_metrics_summary, autoscaler_summary, self.event_summarizer.summary())

    log.info("autoscaler starting for GCS %s", spec.gcs_address)
    HeartbeatMonitor(spec.gcs_address, read_config, prefix_cluster_info=True, retry_on_failure=False).run()


def cpu_wait_seconds(pid: int) -> float:
    """Seconds a process's threads have spent runnable but waiting for a CPU (the kernel's schedstat); 0 when it is
    gone or the kernel does not say."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0.0
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the thread ended
    return total / 1e9


class MonitorProcess:
    """A running monitor child: started, watched (exit, heartbeat, memory) and stopped by the operator."""

    def __init__(self, spec: MonitorSpec) -> None:
        self.spec = spec
        for path in (spec.error_path, spec.view_path, spec.events_path):
            path.unlink(missing_ok=True)
        spec.heartbeat_path.touch()
        self.process = _mp().Process(
            target=run_monitor, args=(spec,), name=logs.cluster_prefix(spec.cluster, spec.namespace)
        )
        self.process.start()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def exit_code(self) -> int | None:
        """None while running."""
        return self.process.exitcode

    def ended(self) -> bool:
        """Whether the process has ended; unlike exit_code(), safe beside it in another thread (it reads nothing
        from the forkserver's pipe: the exit code is read once, by exit_code())."""
        return bool(multiprocessing.connection.wait([self.process.sentinel], timeout=0))

    def error(self) -> str | None:
        return self.spec.error_path.read_text() if self.spec.error_path.exists() else None

    def view(self) -> dict[str, Any] | None:
        """What the monitor saw in its last round, or None before its first."""
        try:
            view: dict[str, Any] = json.loads(self.spec.view_path.read_text())
        except (OSError, ValueError):
            return None
        return view

    def decisions(self) -> list[dict[str, Any]]:
        """The decisions the monitor wrote since the last call: {decision: Ray's event summary ("Adding 2 node(s) of
        type rayWorkerType.", …), demand: the demand of that round}. Read and emptied under the writer's lock, so
        the file holds only what is unread."""
        try:
            with open(self.spec.events_path, "r+b") as events:
                fcntl.flock(events, fcntl.LOCK_EX)
                data = events.read()
                events.truncate(0)
        except OSError:
            return []
        return [json.loads(line) for line in data.splitlines() if line.strip()]

    def waited_for_cpu(self) -> float:
        """cpu_wait_seconds() of the monitor: how starved of CPU it has been."""
        return cpu_wait_seconds(self.process.pid) if self.process.pid else 0.0

    def last_round(self) -> float:
        """When the monitor made its last round (its heartbeat's time, as time.time() counts)."""
        return self.spec.heartbeat_path.stat().st_mtime

    def stop(self, timeout: float = 2.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`: the monitor stops; no pod is touched. Its handler exits at once,
        unless its main thread waits in Ray's C++ code (a call to a GCS that is gone retries for a minute)."""
        if self.process.exitcode is None:
            self.process.terminate()
            self.process.join(timeout)
        if self.process.exitcode is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.join(5)
