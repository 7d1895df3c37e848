"""What the autoscalers' forkserver makes once, for every autoscaler it forks to share.

Imported by the forkserver only, as the last of ray_operator.monitor_process.PRELOAD: a forked autoscaler shares
its parent's memory until either writes to it, so what every autoscaler would otherwise make for itself as it
starts, the same in each, is made here. Each item is memory that every running cluster no longer pays for
(`python -m bench.monitor_memory` measures it):

- the root logger at the operator's default level: setting a level writes to every logger of the process (it
  clears their caches), hundreds of them, Ray's and its libraries': ~0.6 MB;
- Ray's check of the cluster config against its JSON schema, off: it builds a jsonschema validator whenever the
  config changes (~1.7 MB) and only logs a failure, at debug level. Every config the operator writes passes it
  (tests/unit/test_cluster_config.py);
- the autoscaler's Prometheus metrics, off: an autoscaler serves them only when given an address to (Ray's own
  monitor process, `monitor_ip`), which the operator's never are, so each kept ~30 metrics and updated them every
  round for no reader (~0.4 MB). What they would say is in each RayCluster's status.autoscaler;
- last, the free chunks of its C heap, taken (ray_operator.malloc_holes): each autoscaler's C allocations would land
  in them, scattered over pages it shares with the forkserver, and copy every page they touch (~1.4 MB).
"""

import logging

import ray.autoscaler._private.autoscaler as ray_autoscaler
import ray.autoscaler._private.monitor as ray_monitor
from ray.autoscaler._private.prom_metrics import NullMetric

from ray_operator.logs import DEFAULT_LEVEL
from ray_operator.malloc_holes import take_free_chunks


def _validated_by_the_operator(config: dict) -> None:
    """Ray's validate_config, for configs the operator made."""


class _UnservedMetrics:
    """Ray's AutoscalerPrometheusMetrics as Ray has them without prometheus_client: every metric a no-op."""

    def __init__(self, session_name: str | None = None) -> None:
        self.session_name = session_name

    def __getattr__(self, name: str) -> NullMetric:
        return NullMetric()


logging.getLogger().setLevel(DEFAULT_LEVEL)
ray_autoscaler.validate_config = _validated_by_the_operator  # type: ignore[attr-defined]
ray_monitor.AutoscalerPrometheusMetrics = _UnservedMetrics  # type: ignore[misc, assignment]
take_free_chunks()
