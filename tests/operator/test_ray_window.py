"""The oldest Ray the operator supports with token authentication (2.52, the first with it): a cluster of that image
runs under the operator's newer autoscaler, and a worker deleted while a task runs on it drains through that Ray's
GCS client (which lacks calls the newest has) so the task completes. The image is that Ray installed once into
.tools/ (tests.harness.tools.ray_image); the pod runtime runs it as `rayproject/ray:2.52.0`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.harness.local_kube import stack_fixtures
from tests.harness.tools import ray_image
from tests.operator.test_drain import delete_pod, drained_and_gone, finished, long_task_pod, running_cluster, start_job

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the pod runtime needs root for network namespaces")

OLDEST = "2.52.0"
IMAGE = f"rayproject/ray:{OLDEST}"

kube, no_cluster_left = stack_fixtures("ray-window", images=lambda: {IMAGE: ray_image(OLDEST)})

# The Ray version a cluster's head wrote into its GCS (read with this process's newer Ray, as the autoscaler does).
RAY_VERSION = """
import json, sys
from ray._raylet import GcsClient
print(json.loads(GcsClient(address=sys.argv[1]).internal_kv_get(b"CLUSTER_METADATA", b"cluster"))["ray_version"])
"""


def test_the_oldest_supported_ray_runs_and_a_deleted_worker_drains_its_task_to_the_end(kube):
    running_cluster(kube, "oldest", drain_seconds=90, image=IMAGE)
    version = subprocess.run(
        [sys.executable, "-c", RAY_VERSION, f"{kube.head('oldest', 'ray').status.pod_ip}:6379"],
        env={**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": kube.ray_token("oldest", "ray") or ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert version[-1:] == [OLDEST], version
    client, job = start_job(kube, "oldest", seconds=20)
    pod = long_task_pod(kube, client, job, "oldest")
    delete_pod(kube, pod)
    printed = finished(client, job)
    assert "SHORT_TASK_ELSEWHERE True" in printed and "LONG_TASK_DONE True" in printed
    drained_and_gone(kube, pod)
