"""The operator with nothing but the chart's RBAC: its ServiceAccount's token, against the authenticating API server.

The Deployment is not run by a controller here; the operator runs as a local process with the token the
Deployment's pod would have. A missing verb would show as a 403 and a cluster that never gets Running or scales.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import ROOT, wait_for
from tests.local_kube import LocalKube, run_ray_job
from tests.tools import helm, helm_env

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the pod runtime needs root for network namespaces")


def test_a_namespaced_operator_runs_a_cluster_with_the_charts_rbac(tmp_path):
    kube = LocalKube(tmp_path, admin_token="admin-token")
    try:
        kube.start_server()
        kube.start_runtime()
        values = tmp_path / "values.yaml"
        values.write_text((ROOT / "values/namespaced-operator.yaml").read_text().replace("idleTimeoutMinutes: 1", "idleTimeoutMinutes: 0.1")
                          .replace("memory: 1Gi", "memory: 512Mi"))
        subprocess.run([str(helm()), "install", "team", str(ROOT / "charts/ray"), "--namespace", "team-a", "--create-namespace",
                        "-f", str(values)], check=True, env=helm_env(tmp_path, kube.kubeconfig), capture_output=True, timeout=120)
        token = kube.core.create_namespaced_service_account_token("team-ray-operator", "team-a", {"spec": {}}).status.token
        kube.start_operator("--namespace", "team-a", kubeconfig=kube.server.write_kubeconfig(tmp_path / "operator", token))
        kube.wait_phase("team", "team-a", "Running", timeout=120)
        assert run_ray_job(kube.head("team", "team-a").status.pod_ip, tasks=3) == "SUCCEEDED"
        wait_for(lambda: not kube.workers("team", "team-a"), timeout=120, message="idle workers removed")
        assert not [line for line in kube.operator_lines() if "Forbidden" in line or "(403)" in line]
    finally:
        kube.close()
