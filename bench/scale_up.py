"""Benchmark: how fast unmet demand becomes a worker pod, and a worker in the Ray cluster (issue 17).

Runs the local stack the operator tests use (the project's API server, the pod runtime with real Ray pods,
`ray-operator run` with the autoscaler interval asked for), and for each repeat: a RayCluster whose head has one
CPU and whose workers have one each (minWorkers 0), Running; then a job on it whose driver submits `--workers` + 1
one-CPU tasks: the head runs one, the rest is unmet demand. Measured from the driver's submit (wall clock, the
same machine's) to

- the first worker pod created: its ADDED event on a watch of the namespace;
- the first worker joined: the driver sees one more live Ray node;

in seconds and in autoscaler rounds (seconds / `--interval`). Target: worker pod created ≤ 1.2 rounds.

    python -m bench.scale_up                              (from the repository, after `pip install -e '.[test]'`)
    python -m bench.scale_up --interval 5 --repeat 5 --workers 2
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

from bench.watching import FirstPods
from pod_runtime.network import network_kind
from ray_operator.helm_values import raycluster_from_values
from tests.harness.files import ROOT, load_yaml
from tests.harness.waiting import wait_for
from tests.harness.local_kube import LocalKube, job_client, running_stack

NAMESPACE = "bench"
TARGET_ROUNDS = 1.2
DRIVER = """
import time, ray
ray.init()
alive = lambda: sum(node["Alive"] for node in ray.nodes())
before = alive()
@ray.remote(num_cpus=1)
def hold():
    time.sleep(600)
print("SUBMITTED", time.time(), flush=True)
tasks = [hold.remote() for _ in range({tasks})]
while alive() <= before:
    time.sleep(0.05)
print("JOINED", time.time(), flush=True)
"""


def raycluster(name: str, workers: int) -> dict:
    values = load_yaml(ROOT / "values/cpu-only.yaml")
    values["podTypes"]["rayHeadType"].update(CPU=1, memory="512Mi")
    values["podTypes"]["rayWorkerType"].update(CPU=1, minWorkers=0, maxWorkers=workers, memory="512Mi")
    return raycluster_from_values(values, name, NAMESPACE)


def scale_up_once(kube: LocalKube, watch: FirstPods, name: str, workers: int) -> tuple[float, float]:
    """Seconds from the demand to the first worker pod created, and to the first worker joined."""
    from ray.job_submission import JobStatus

    kube.create(raycluster(name, workers))
    kube.wait_phase(name, NAMESPACE, "Running", timeout=180)
    client = job_client(kube.head(name, NAMESPACE).status.pod_ip, kube.ray_token(name, NAMESPACE))
    job = client.submit_job(entrypoint=f"python -c '{DRIVER.format(tasks=workers + 1)}'", entrypoint_num_cpus=0)
    wait_for(
        lambda: client.get_job_status(job) in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED),
        timeout=300,
        interval=0.5,
        message=f"{name}'s driver to see a worker join",
        state=lambda: client.get_job_logs(job)[-2000:],
    )
    logs = client.get_job_logs(job)
    submitted, joined = (re.search(rf"^{word} ([\d.]+)$", logs, re.MULTILINE) for word in ("SUBMITTED", "JOINED"))
    if not (submitted and joined and name in watch.seen):
        raise RuntimeError(f"{name}: no scale-up was measured; the driver said:\n{logs[-2000:]}")
    kube.delete(name, NAMESPACE)
    return watch.seen[name] - float(submitted.group(1)), float(joined.group(1)) - float(submitted.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=int, default=5, help="the autoscaler's seconds between rounds")
    parser.add_argument("--repeat", type=int, default=3, help="clusters scaled up, one after another")
    parser.add_argument("--workers", type=int, default=1, help="workers the demand needs")
    parser.add_argument("--network", choices=["auto", "netns", "loopback"], default="auto", help="the pod runtime's")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-scale-up-") as work,
        running_stack(Path(work), network=network_kind(args.network)) as kube,
    ):
        kube.stop_operator()
        kube.start_operator("--autoscaler-interval", str(args.interval))
        kube.namespace(NAMESPACE)
        watch = FirstPods(kube.client, NAMESPACE, "ray-node-type=worker", time.time)  # the driver's clock
        print(
            f"{'run':>3} {'pod created s':>13} {'rounds':>6} {'joined s':>8} {'rounds':>6}   (autoscaler round "
            f"{args.interval} s; target: pod created ≤ {TARGET_ROUNDS} rounds)",
            flush=True,
        )
        created, joined = [], []
        for run in range(args.repeat):
            to_pod, to_join = scale_up_once(kube, watch, f"up-{run}", args.workers)
            created.append(to_pod)
            joined.append(to_join)
            print(
                f"{run + 1:>3} {to_pod:>13.2f} {to_pod / args.interval:>6.2f} {to_join:>8.2f} "
                f"{to_join / args.interval:>6.2f}",
                flush=True,
            )
        pod, join = statistics.median(created), statistics.median(joined)
        print(
            f"{'p50':>3} {pod:>13.2f} {pod / args.interval:>6.2f} {join:>8.2f} {join / args.interval:>6.2f}", flush=True
        )
        watch.stop()
        kube.delete_every_raycluster()


if __name__ == "__main__":
    main()
