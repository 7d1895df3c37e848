"""The benchmarks still run and print their figures (what they measure is read off their output, not asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.harness.files import ROOT


def run_benchmark(module: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    """`python -m bench.<module> args` from the repository; it must succeed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def test_the_running_cluster_cost_benchmark_prints_a_row_per_step():
    run = run_benchmark("monitor_memory", "--steps", "1", "--window", "6", "--settle", "1", timeout=300)
    # clusters, tree USS, tree PSS, PSS per cluster, core %, core % per cluster, monitor USS, requests per RC per min
    row = re.search(
        r"^\s+1\s+([\d.]+)\s+([\d.]+)\s+(-?[\d.]+)\s+([\d.]+)\s+(-?[\d.]+)\s+([\d.]+)\s+([\d.]+)\s",
        run.stdout,
        re.MULTILINE,
    )
    assert row, run.stdout
    assert float(row.group(6)) > 0  # one monitor was found and measured
    assert float(row.group(4)) > 0  # the tree's CPU was sampled


def test_the_scale_benchmark_prints_a_row_per_size_and_a_line_per_replica():
    run = run_benchmark("scale", "--clusters", "4", "--replicas", "2", "--window", "5", timeout=600)
    row = re.search(r"^\s+4\s+2\s+([\d.]+)\s+([\d.]+)\s+(-?[\d.]+)\s+([\d.]+)$", run.stdout, re.MULTILINE)
    assert row, run.stdout
    assert float(row.group(1)) > 0  # the heads were created and timed (steady requests are ~0 by design now)
    replicas = re.findall(
        r"^    replica-\d: (\d+) clusters, [\d.]+ core, \d+ MB RSS, \d+ threads$", run.stdout, re.MULTILINE
    )
    assert len(replicas) == 2 and sum(map(int, replicas)) == 4, run.stdout  # every cluster run by one replica


def test_the_scale_up_benchmark_prints_a_row_per_run():
    run = run_benchmark("scale_up", "--repeat", "1", "--interval", "1", timeout=600)
    row = re.search(r"^\s+1\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", run.stdout, re.MULTILINE)
    assert row, run.stdout
    assert 0 < float(row.group(1)) <= float(row.group(3)), run.stdout  # the pod is made before its Ray node joins


def test_the_drain_benchmark_prints_a_row_per_setting():
    """Its idle scenario at its smallest: one cycle of one task, drain on (drain off runs in the replacement
    scenario's test)."""
    run = run_benchmark("drain", "--cycles", "1", "--burst", "1", "--drain", "on", timeout=900)
    # drain, cycles, tasks, retried, failed, idle workers removed, drains rejected, workers deleted
    rows = re.findall(r"^\s*(on|off) \d+s\s+1\s+1\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", run.stdout, re.MULTILINE)
    assert [row[0] for row in rows] == ["on"], run.stdout
    assert rows[0][2] == "0", run.stdout  # drained: no task failed


def test_the_drain_benchmarks_replacement_scenario_prints_a_row_per_setting():
    run = run_benchmark(
        "drain", "--scenario", "replace", "--replacements", "1", "--workers", "1", "--max-workers", "2",
        "--task-seconds", "15", timeout=900,
    )  # fmt: skip
    # drain, replacements, tasks, retried, failed, most worker pods at once, seconds per replacement
    rows = re.findall(r"^\s*(on|off) \d+s\s+1\s+1\s+(\d+)\s+(\d+)\s+(\d+)\s+[\d.]+$", run.stdout, re.MULTILINE)
    assert [row[0] for row in rows] == ["on", "off"], run.stdout
    _, retried, failed, most = rows[0]
    assert (retried, failed) == ("0", "0") and int(most) <= 2, run.stdout  # drained, within maxWorkers
    _, retried, failed, _ = rows[1]
    assert int(retried) + int(failed) == 1, run.stdout  # not drained: the task's worker went while it ran


def test_the_reconcile_latency_benchmark_prints_a_row_per_size():
    run = run_benchmark("reconcile_latency", "--clusters", "1,2", "--changes", "4", "--gap", "0.2", timeout=600)
    rows = re.findall(r"^\s+([12])\s+4\s+(\d+)\s+(\d+)$", run.stdout, re.MULTILINE)
    assert [size for size, _, _ in rows] == ["1", "2"], run.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="the pod runtime needs root for network namespaces")
def test_the_fuzzer_finds_no_invariant_broken():
    """A fixed-seed short run of bench.fuzz --ray: hostile RayClusters on a real control plane beside a real Ray
    cluster that must keep running and scaling, 0 violations (the long run is on demand: `--mutations 2000`)."""
    run = run_benchmark("fuzz", "--mutations", "40", "--seed", "1", "--batch", "20", "--ray", timeout=900)
    line = re.search(
        r"^fuzz: (\d+) mutations, (\d+) refused at admission, (\d+) Error, (\d+) valid, (\d+) invariant "
        r"violations$",
        run.stdout,
        re.MULTILINE,
    )
    assert line, run.stdout
    mutations, refused, error, valid, violations = map(int, line.groups())
    assert mutations == 40 and refused + error + valid + violations >= 40 and refused > 0 and error > 0, run.stdout
    assert violations == 0, run.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="the pod runtime needs root for network namespaces")
def test_the_handover_benchmark_moves_clusters_without_duplicates_or_churn():
    """bench.handover at its smallest: 2 replicas, 2 clusters with real Ray heads; a replica's SIGKILL and a rolling
    update move clusters with never two autoscalers for one and no Ray pod made or deleted."""
    run = run_benchmark("handover", "--replicas", "2", "--clusters", "2", timeout=900)
    killed = re.search(
        r"^handover: 2 replicas, 2 clusters, (\d+) moved by SIGKILL: p50 ([\d.]+) s, p99 ([\d.]+) s; "
        r"(\d+) duplicate samples, (\d+) Ray pods churned$",
        run.stdout,
        re.MULTILINE,
    )
    rolled = re.search(
        r"^rolling update: 2 replicas replaced: longest without an autoscaler ([\d.]+) s; "
        r"(\d+) duplicate samples, (\d+) Ray pods churned$",
        run.stdout,
        re.MULTILINE,
    )
    assert killed and rolled, run.stdout
    assert int(killed.group(1)) >= 1 and float(killed.group(3)) > 0  # the busier replica was killed, its clusters moved
    assert (killed.group(4), killed.group(5), rolled.group(2), rolled.group(3)) == ("0", "0", "0", "0"), run.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="the pod runtime needs root for network namespaces")
def test_the_chaos_run_breaks_no_invariant():
    """A fixed-seed 3-minute bench.chaos: faults of every kind drawn at random while jobs run, 0 violations (the long
    run is on demand: `--minutes 30`)."""
    run = run_benchmark("chaos", "--minutes", "3", "--seed", "1", "--every", "10", timeout=1500)
    line = re.search(r"^chaos: (\d+) faults, (\d+) jobs completed, (\d+) invariant violations$", run.stdout, re.M)
    assert line, run.stdout
    faults, jobs, violations = (int(n) for n in line.groups())
    assert violations == 0, run.stdout
    assert faults >= 3 and jobs >= 1, run.stdout
