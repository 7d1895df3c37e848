"""How long a process waited for a CPU, from the kernel's schedstat: what tells a starved autoscaler from a hung one."""

from __future__ import annotations

import subprocess
import sys

from ray_operator.monitor_process import cpu_wait_seconds


def test_processes_that_compete_for_one_cpu_wait_for_it_and_a_gone_one_has_waited_nothing():
    # Two busy processes pinned to one CPU for a second: each spends about half of it waiting for the other.
    spin = "import os, time\nos.sched_setaffinity(0, {0})\nend = time.time() + 1\nwhile time.time() < end: pass\n"
    busy = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(2)]
    waited = []
    while any(p.poll() is None for p in busy):
        waited = [cpu_wait_seconds(p.pid) or w for p, w in zip(busy, waited or [0.0, 0.0], strict=True)]
    assert max(waited) > 0.2
    assert cpu_wait_seconds(busy[0].pid) == 0.0  # reaped: gone
