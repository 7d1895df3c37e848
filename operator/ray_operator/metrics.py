"""The operator's Prometheus metrics and the endpoint that serves them (`ray-operator run --metrics-port`).

- `ray_operator_clusters{phase}`: managed RayClusters by `status.phase`, read from the controllers when scraped;
- `ray_operator_autoscaler_restarts_total{namespace,cluster}`: failures of a cluster's autoscaler since the
  operator started (each one counted in `status.autoscalerRetries` too, which outlives an operator restart);
- `ray_operator_reconcile_duration_seconds`: how long one reconciliation of a RayCluster takes;
plus prometheus_client's own process metrics (memory, CPU, open files) of the operator process.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator

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


class PhaseCollector(Collector):
    """Managed RayClusters by phase, counted when scraped; every phase is present, 0 when no cluster has it."""

    def __init__(self, phases: Callable[[], Iterable[str | None]]) -> None:
        self.phases = phases

    def collect(self) -> Iterator[GaugeMetricFamily]:
        tally = Tally(self.phases())
        family = GaugeMetricFamily("ray_operator_clusters", "Managed RayClusters by status.phase", labels=["phase"])
        for phase in PHASES:
            family.add_metric([phase], tally[phase])
        yield family


def serve(host: str, port: int, phases: Callable[[], Iterable[str | None]]) -> None:
    """Serve /metrics on host:port from a daemon thread; OSError if it cannot listen there."""
    start_http_server(port, addr=host)
    REGISTRY.register(PhaseCollector(phases))
