"""The oldest Rays the operator supports: 2.50, the window's first (token authentication off: 2.50 has none), and
2.52, the first with token authentication. A cluster of each image runs under the operator's newer autoscaler, and a
worker deleted while a task runs on it drains through that Ray's GCS client (which lacks calls the newest has) so the
task completes. Each image is that Ray installed once into .tools/ (tests.harness.tools.ray_image); the pod runtime
runs it as `rayproject/ray:<version>`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.harness.local_kube import stack_fixtures
from tests.harness.tools import ray_image
from tests.operator.test_drain import delete_pod, drained_and_gone, finished, long_task_pod, running_cluster, start_job

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the pod runtime needs root for network namespaces")

OLDEST = {"2.50.0": "disabled", "2.52.0": "token"}  # each version, and the authentication it runs with

kube, no_cluster_left = stack_fixtures(
    "ray-window", images=lambda: {f"rayproject/ray:{version}": ray_image(version) for version in OLDEST}
)

# The Ray version a cluster's head wrote into its GCS (read with this process's newer Ray, as the autoscaler does).
RAY_VERSION = """
import json, sys
from ray._raylet import GcsClient
print(json.loads(GcsClient(address=sys.argv[1]).internal_kv_get(b"CLUSTER_METADATA", b"cluster"))["ray_version"])
"""


@pytest.mark.parametrize("version", OLDEST)
def test_an_old_supported_ray_runs_and_a_deleted_worker_drains_its_task_to_the_end(kube, version):
    name = f"ray-{version.replace('.', '-')}"
    running_cluster(kube, name, drain_seconds=90, image=f"rayproject/ray:{version}", authentication=OLDEST[version])
    token = kube.ray_token(name, "ray")
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token} if token else {}
    seen = subprocess.run(
        [sys.executable, "-c", RAY_VERSION, f"{kube.head(name, 'ray').status.pod_ip}:6379"],
        env={**os.environ, **auth},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert seen[-1:] == [version], seen
    client, job = start_job(kube, name, seconds=20)
    pod = long_task_pod(kube, client, job, name)
    delete_pod(kube, pod)
    printed = finished(client, job)
    assert "SHORT_TASK_ELSEWHERE True" in printed and "LONG_TASK_DONE True" in printed
    drained_and_gone(kube, pod)
