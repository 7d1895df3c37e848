"""Benchmark: hostile RayClusters against one operator on a real control plane, as Acto tests operators.

A fresh control plane (no kubelet: pods are created and stay Pending, so thousands of clusters cost no Ray), the
CRD, `ray-operator run`, then seeded mutations of values/cpu-only.yaml's RayCluster (bench.mutations: the CRD
schema's types and bounds, huge and non-finite numbers, enormous exponents, wrong shapes, unicode, long names, deep
nesting), created in batches. Invariants, checked for every batch; each broken one is printed:

- the operator process is alive, and its /healthz answers within 1 s (also while the batch is being created);
- a healthy canary RayCluster created after each batch gets its head pod within 10 s and its status written; with
  `--ray` (real Ray pods run by the pod runtime as a node's kubelet; the mutations' pods are kept from scheduling),
  a healthy Running cluster stays Running with no restart through every batch, and at the end scales up for a
  job and runs it;
- every admitted mutation ends in phase Error with a message, or is taken as valid (its head pod made), each within
  30 s of the batch's previous outcome (heads wait for places to start in, a few per node at once);
- after the batch is deleted, nothing is left: no pod, Service or Secret of its clusters, no work-dir file.

It ends with one line: `fuzz: M mutations, R refused at admission, E Error, V valid, I invariant violations`.

    python -m bench.fuzz                       (200 mutations, seed 1)
    python -m bench.fuzz --mutations 2000 --seed 7 --ray
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from bench.mutations import mutations
from bench.scale import NAMESPACE, bench_control_plane, running_operator
from control_plane import ControlPlane
from control_plane.processes import free_port
from ray_operator.helm_values import raycluster_from_values
from tests.harness.files import CRD_FILE, ROOT, load_yaml

ARGS = ("cluster.ray.io", "v1", NAMESPACE, "rayclusters")
HEALTHY_NAMESPACE = "fuzz-healthy"
HEALTH_LIMIT = 1.0
OUTCOME_SECONDS = 30.0


class Health:
    """/healthz asked every 0.2 s from a thread of its own; answers slower than HEALTH_LIMIT (or none) recorded."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._probe, daemon=True)
        self._thread.start()

    def _probe(self) -> None:
        while not self._stop.wait(0.2):
            began = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=HEALTH_LIMIT) as answer:
                    answer.read()
            except Exception as error:  # noqa: BLE001 - every failure is a finding
                self.failures.append(f"/healthz: {error!r:.120} after {time.monotonic() - began:.2f}s")

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join()
        return self.failures


def _phase(custom: Any, name: str) -> tuple[str | None, str]:
    try:
        status = custom.get_namespaced_custom_object(*ARGS, name).get("status") or {}
    except ApiException:
        return None, ""
    return status.get("phase"), status.get("message") or ""


def _head_made(core: Any, name: str) -> bool:
    return bool(core.list_namespaced_pod(NAMESPACE, label_selector=f"ray-cluster-name={name},ray-node-type=head").items)


def _wait(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return bool(condition())


@dataclass
class Stack:
    """What the mutations meet: the API, the operator (its process, work dir, health port) and the healthy cluster's
    checks (each a violation, or None)."""

    client: kubernetes.client.ApiClient
    operator: subprocess.Popen
    work_dir: Path
    health_port: int
    healthy: Callable[[int], str | None]
    scales_at_the_end: Callable[[], str | None]
    never_scheduled: bool  # the mutations' pods must not run


@contextmanager
def plain_stack(work: Path) -> Iterator[Stack]:
    """A control plane without kubelet and the operator: a canary per batch must get its head and status."""
    port = free_port()
    with bench_control_plane(work) as (plane, client), running_operator(plane, work, "--health-port", str(port)) as op:
        custom, core = kubernetes.client.CustomObjectsApi(client), kubernetes.client.CoreV1Api(client)
        example = raycluster_from_values(load_yaml(ROOT / "values/cpu-only.yaml"), "canary", NAMESPACE)

        def canary(batch: int) -> str | None:
            name = f"canary-{batch}"
            custom.create_namespaced_custom_object(*ARGS, {**example, "metadata": {"name": name}})
            served = _wait(lambda: _head_made(core, name) and _phase(custom, name)[0], 10)
            custom.delete_namespaced_custom_object(*ARGS, name)
            return None if served else f"the canary after batch {batch} got no head pod or status within 10 s"

        yield Stack(client, op, work / "operator", port, canary, lambda: None, never_scheduled=False)


@contextmanager
def ray_stack(work: Path) -> Iterator[Stack]:
    """The tests' stack on a real control plane: pod runtime as kubelet, real Ray, and a healthy cluster Running."""
    from tests.harness.local_kube import pod_gateway, running_stack

    gateway = pod_gateway("netns")
    plane = ControlPlane(work / "control-plane", addresses=[gateway]).start()
    try:
        with running_stack(work / "stack", control_plane=plane) as kube:
            port = free_port()
            kube.stop_operator()
            operator = kube.start_operator("--health-port", str(port))
            values = load_yaml(ROOT / "values/cpu-only.yaml")
            values["podTypes"]["rayHeadType"].update(CPU=1, memory="512Mi")
            values["podTypes"]["rayWorkerType"].update(CPU=1, minWorkers=0, maxWorkers=1, memory="512Mi")
            kube.create(raycluster_from_values(values, "healthy", HEALTHY_NAMESPACE))
            kube.wait_phase("healthy", HEALTHY_NAMESPACE, "Running", timeout=180)
            kube.namespace(NAMESPACE)

            def healthy(batch: int) -> str | None:
                status = kube.status("healthy", HEALTHY_NAMESPACE)
                if (status.get("phase"), status.get("autoscalerRetries")) != ("Running", 0):
                    return f"the healthy cluster after batch {batch}: {status.get('phase')}, {status.get('message')}"
                return None

            def scales() -> str | None:
                job = kube.run_job("healthy", HEALTHY_NAMESPACE, tasks=2, seconds=5)  # the head holds one CPU
                return None if job == "SUCCEEDED" else f"the healthy cluster's job ended {job}"

            yield Stack(
                kube.client,
                operator,
                kube.work / f"operator{len(kube.operators) - 1}",
                port,
                healthy,
                scales,
                never_scheduled=True,
            )
    finally:
        plane.stop()


def run(count: int, seed: int, batch: int, stack: Stack) -> dict[str, Any]:
    example = raycluster_from_values(load_yaml(ROOT / "values/cpu-only.yaml"), "fz", NAMESPACE)
    schema = load_yaml(CRD_FILE)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    found: dict[str, Any] = {"mutations": 0, "refused": 0, "error": 0, "valid": 0, "violations": []}
    violations: list[str] = found["violations"]
    custom, core = kubernetes.client.CustomObjectsApi(stack.client), kubernetes.client.CoreV1Api(stack.client)
    _wait(lambda: _health_answers(stack.health_port), 30)
    health = Health(f"http://127.0.0.1:{stack.health_port}/healthz")
    drawn = list(mutations(example, schema, seed, count))
    for start in range(0, len(drawn), batch):
        admitted: dict[str, str] = {}  # name → the mutation
        for index, mutation in enumerate(drawn[start : start + batch], start):
            body = mutation.raycluster
            metadata = body.setdefault("metadata", {})
            if isinstance(metadata, dict) and metadata.get("name") == "fz":
                metadata["name"] = f"fz-{index}"
            if stack.never_scheduled:
                _never_scheduled(body)
            found["mutations"] += 1
            try:
                created: Any = custom.create_namespaced_custom_object(*ARGS, json.loads(json.dumps(body, default=str)))
            except (ApiException, ValueError):
                found["refused"] += 1  # refused at admission (or not JSON at all: no client sends it)
                continue
            name = metadata.get("name") if isinstance(metadata, dict) else None
            admitted[created["metadata"]["name"]] = f"{mutation.path}: {mutation.what} (name {name!r:.30})"
        outcomes = _outcomes(custom, core, admitted)
        for name, what in admitted.items():
            if name not in outcomes:
                violations.append(f"{what}: neither Error with a message nor a head pod ({_phase(custom, name)})")
        found["error"] += sum(outcome == "Error" for outcome in outcomes.values())
        found["valid"] += sum(outcome == "valid" for outcome in outcomes.values())
        violations += filter(None, [stack.healthy(start // batch)])
        for name in admitted:
            custom.delete_namespaced_custom_object(*ARGS, name)
        names = list(admitted)
        if not _wait(lambda names=names: not _leftovers(core, stack.work_dir, names), 120):
            violations.append(f"left behind after delete: {_leftovers(core, stack.work_dir, names)}")
        if stack.operator.poll() is not None:
            violations.append(f"the operator exited with code {stack.operator.returncode}")
            break
    violations += health.stop()
    if stack.operator.poll() is None:
        violations += filter(None, [stack.scales_at_the_end()])
    return found


def _never_scheduled(raycluster: dict[str, Any]) -> None:
    """The mutated RayCluster's pods wait for a node that never comes (they must not run Ray beside the real one)."""
    spec = raycluster.get("spec")
    pod_types = spec.get("podTypes") if isinstance(spec, dict) else None
    for pod_type in pod_types if isinstance(pod_types, list) else []:
        pod_config = pod_type.get("podConfig") if isinstance(pod_type, dict) else None
        pod_spec = pod_config.get("spec") if isinstance(pod_config, dict) else None
        if isinstance(pod_spec, dict):
            pod_spec["nodeSelector"] = {"ray-operator.fuzz/never": "scheduled"}


def _outcomes(custom: Any, core: Any, names: dict[str, str]) -> dict[str, str]:
    """Each cluster's outcome once it has one: "Error" (with a message) or "valid" (its head pod made); a LIST of
    the namespace's RayClusters and head pods every half second, until OUTCOME_SECONDS pass without a new outcome
    (valid heads wait for places to start in: the operator lets a node start only a few Ray pods at once)."""
    outcomes: dict[str, str] = {}
    deadline = time.monotonic() + OUTCOME_SECONDS
    while len(outcomes) < len(names) and time.monotonic() < deadline:
        known = len(outcomes)
        for item in custom.list_namespaced_custom_object(*ARGS)["items"]:
            status = item.get("status") or {}
            if item["metadata"]["name"] in names and status.get("phase") == "Error" and status.get("message"):
                outcomes[item["metadata"]["name"]] = "Error"
        for pod in core.list_namespaced_pod(NAMESPACE, label_selector="ray-node-type=head").items:
            name = pod.metadata.labels.get("ray-cluster-name")
            if name in names:
                outcomes.setdefault(name, "valid")
        if len(outcomes) > known:
            deadline = time.monotonic() + OUTCOME_SECONDS
        time.sleep(0.5)
    return outcomes


def _health_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=HEALTH_LIMIT):
            return True
    except OSError:
        return False


def _leftovers(core: Any, work: Path, names: list[str]) -> list[str]:
    """Pods, Services and Secrets of these clusters, and their files in the operator's work dir, still there."""
    gone = set(names)
    left = [
        f"pod {p.metadata.name}"
        for p in core.list_namespaced_pod(NAMESPACE, label_selector="ray-cluster-name").items
        if p.metadata.labels["ray-cluster-name"] in gone
    ]
    left += [
        f"Service {s.metadata.name}"
        for s in core.list_namespaced_service(NAMESPACE, label_selector="ray-cluster-name").items
        if s.metadata.labels["ray-cluster-name"] in gone
    ]
    left += [
        f"Secret {s.metadata.name}"
        for s in core.list_namespaced_secret(NAMESPACE).items
        if s.metadata.name.removesuffix("-ray-auth") in gone
    ]
    left += [f"work dir of {name}" for name in names if (work / f"{NAMESPACE}.{name}").exists()]
    return left


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mutations", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=100, help="mutations created at once")
    parser.add_argument("--ray", action="store_true", help="a real Ray cluster beside them (needs root)")
    args = parser.parse_args()
    sys.setrecursionlimit(20_000)  # this client encodes the deepest nestings (5,000 levels) as any Go client would
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as work:
        with (ray_stack if args.ray else plain_stack)(Path(work)) as stack:
            found = run(args.mutations, args.seed, args.batch, stack)
    for violation in found["violations"]:
        print(f"violation: {violation}")
    print(
        f"fuzz: {found['mutations']} mutations, {found['refused']} refused at admission, {found['error']} Error, "
        f"{found['valid']} valid, {len(found['violations'])} invariant violations",
        flush=True,
    )


if __name__ == "__main__":
    main()
