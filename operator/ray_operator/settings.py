"""The operator's knobs, set by `ray-operator run` flags."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autoscaler_bridge.names import DEFAULT_MAX_PENDING_PODS, DEFAULT_PENDING_TIMEOUT_SECONDS
from ray_operator.logs import DEFAULT_LEVEL


@dataclass(frozen=True)
class Settings:
    namespace: str | None = None  # None: every namespace
    work_dir: Path = Path("/tmp/ray-operator")
    resync_seconds: float = 300.0  # every cluster looked at again, for what the watches missed
    reconcile_workers: int = 16  # threads reconciling clusters, however many there are (their work is mostly I/O)
    autoscaler_interval_seconds: int = 5  # Ray reads it as whole seconds
    autoscaler_status_seconds: float = 30.0  # status.autoscaler of a busy cluster is written at most this often
    stall_rounds: int = 12
    restart_backoff_seconds: float = 2.0
    max_restart_backoff_seconds: float = 60.0
    max_pending_pods: int = DEFAULT_MAX_PENDING_PODS
    pending_timeout_seconds: float = DEFAULT_PENDING_TIMEOUT_SECONDS
    max_starting_pods: int = 3  # Ray pods starting at once on one node (made, their Ray node not joined yet); 0: any
    monitor_memory_limit_mb: int = 1024  # each autoscaler's RLIMIT_DATA
    log_level: str = DEFAULT_LEVEL
    identity: str = "ray-operator"  # this operator among operators (its Lease, status.operator)
    lease_namespace: str = "default"  # where its Lease is
    group: str = "ray-operator"  # the operator's replicas: the operators whose Leases share this label
    owner_check_seconds: float = 5.0  # how often a cluster another operator owns (or a fenced one) is looked at

    @property
    def fence_path(self) -> Path:
        """The file its autoscalers read the end of its Lease's validity from (autoscaler_bridge.fence)."""
        return self.work_dir / "lease-valid-until"

    @property
    def start_gate_path(self) -> Path:
        """The file its autoscalers claim places for Ray pods to start from (autoscaler_bridge.start_gate)."""
        return self.work_dir / "ray-pods-starting"

    @property
    def pod_service_path(self) -> Path:
        """The socket its autoscalers ask it for their clusters' pods at (autoscaler_bridge.pod_channel)."""
        return self.work_dir / "pods.sock"

    @property
    def kept_for_workers(self) -> int:
        """Of the places to start Ray pods on a node (max_starting_pods), those a head never takes: one, of two or
        more, so that the clusters running already scale up while new clusters' heads start (and fail, on an
        overloaded node)."""
        return 1 if self.max_starting_pods > 1 else 0

    @property
    def head_places(self) -> int:
        """The places to start Ray pods on a node a head may take."""
        return self.max_starting_pods - self.kept_for_workers

    @property
    def stall_seconds(self) -> float:
        """How long an autoscaler may go without a round before it counts as hung."""
        return float(self.stall_rounds * self.autoscaler_interval_seconds)

    def restart_delay(self, failures: int, spread: float) -> float:
        """The backoff before a restart after the n-th failure in a row: exponential and bounded, and of that half
        fixed and half `spread` (in [0, 1], drawn at random for each failure), so that clusters that failed
        together (a node overloaded by their heads) do not restart together and overload it again."""
        delay = min(self.max_restart_backoff_seconds, self.restart_backoff_seconds * 2 ** max(0, failures - 1))
        return delay / 2 * (1 + spread)
