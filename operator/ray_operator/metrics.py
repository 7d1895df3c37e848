"""The operator's Prometheus metrics and the endpoint that serves them (`ray-operator run --metrics-port`).

- `ray_operator_clusters{phase}`: managed RayClusters by `status.phase`, read from the controllers when scraped;
- `ray_operator_pending_demand{namespace,cluster}`: resource shapes a cluster's Ray work waits for (its
  `status.autoscaler.demandTotal`), and `ray_operator_workers{namespace,cluster,pod_type,state}`: its worker pods
  per podType, ready and pending (its `status.podTypes`), read likewise;
- `ray_operator_autoscaler_restarts_total{namespace,cluster}`: failures of a cluster's autoscaler since the
  operator started (each one counted in `status.autoscalerRetries` too, which outlives an operator restart);
- `ray_operator_reconcile_duration_seconds`: how long one reconciliation of a RayCluster takes;
plus prometheus_client's own process metrics (memory, CPU, open files) of the operator process.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ray_operator.status import ERROR, RECOVERING, RUNNING, UPDATING

PHASES = (UPDATING, RUNNING, RECOVERING, ERROR)

AUTOSCALER_RESTARTS = Counter(
    "ray_operator_autoscaler_restarts",
    "Failures of a cluster's autoscaler, each followed by a restart",
    ["namespace", "cluster"],
)
RECONCILE_SECONDS = Histogram("ray_operator_reconcile_duration_seconds", "Time one reconciliation of a RayCluster took")


Statuses = Callable[[], Iterable[tuple[str, str, dict[str, Any]]]]  # (namespace, name, status) of each cluster


class ClusterCollector(Collector):
    """Gauges read from the managed RayClusters' status when scraped: clusters by phase (every phase present, 0 when
    no cluster has it), each cluster's pending demand and its workers per podType and state. A deleted cluster's
    series go with it."""

    def __init__(self, statuses: Statuses) -> None:
        self.statuses = statuses

    def collect(self) -> Iterator[GaugeMetricFamily]:
        listed = list(self.statuses())
        tally = Tally(status.get("phase") for _, _, status in listed)
        phases = GaugeMetricFamily("ray_operator_clusters", "Managed RayClusters by status.phase", labels=["phase"])
        for phase in PHASES:
            phases.add_metric([phase], tally[phase])
        demand = GaugeMetricFamily(
            "ray_operator_pending_demand",
            "Resource shapes a cluster's Ray tasks, actors and placement groups wait for",
            labels=["namespace", "cluster"],
        )
        workers = GaugeMetricFamily(
            "ray_operator_workers",
            "Ray worker pods of a cluster per podType and state",
            labels=["namespace", "cluster", "pod_type", "state"],
        )
        for namespace, name, status in listed:
            demand.add_metric([namespace, name], (status.get("autoscaler") or {}).get("demandTotal") or 0)
            for pod_type in status.get("podTypes") or []:
                for state in ("ready", "pending"):
                    workers.add_metric([namespace, name, pod_type["name"], state], pod_type.get(state, 0))
        yield from (phases, demand, workers)


def serve(host: str, port: int, statuses: Statuses) -> None:
    """Serve /metrics on host:port from a daemon thread; OSError if it cannot listen there."""
    start_http_server(port, addr=host)
    REGISTRY.register(ClusterCollector(statuses))
