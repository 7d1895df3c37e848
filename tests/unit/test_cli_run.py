"""`ray-operator run`'s command line and the phase metric, without a cluster."""

import click
from prometheus_client import CollectorRegistry

from ray_operator.cli import run
from ray_operator.metrics import PhaseCollector


def test_every_flag_of_run_is_documented():
    assert [p.name for p in run.params if isinstance(p, click.Option) and not p.help] == []


def test_clusters_are_counted_by_phase_and_every_phase_is_present():
    registry = CollectorRegistry()
    registry.register(PhaseCollector(lambda: ["Running", "Running", "Error", None]))
    counts = {phase: registry.get_sample_value("ray_operator_clusters", {"phase": phase})
              for phase in ("Updating", "Running", "AutoscalingExceptionRecovery", "Error")}
    assert counts == {"Updating": 0, "Running": 2, "AutoscalingExceptionRecovery": 0, "Error": 1}
