"""Benchmark: hostile RayClusters against one operator on a real control plane, as Acto tests operators.

A fresh control plane (no kubelet: pods are created and stay Pending, so thousands of clusters cost no Ray), the
CRD, `ray-operator run`, then seeded mutations of values/cpu-only.yaml's RayCluster (bench.mutations: the CRD
schema's types and bounds, huge and non-finite numbers, enormous exponents, wrong shapes, unicode, long names, deep
nesting), created in batches. Invariants, checked for every batch; each broken one is printed:

- the operator process is alive, and its /healthz answers within 1 s (also while the batch is being created);
- a healthy canary RayCluster created after each batch gets its head pod within 10 s and its status written;
- every admitted mutation ends in phase Error with a message, or is taken as valid (its head pod made);
- after the batch is deleted, nothing is left: no pod, Service or Secret of its clusters, no work-dir file.

It ends with one line: `fuzz: M mutations, R refused at admission, E Error, V valid, I invariant violations`.

    python -m bench.fuzz                       (200 mutations, seed 1)
    python -m bench.fuzz --mutations 2000 --seed 7
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from bench.mutations import mutations
from bench.scale import NAMESPACE, bench_control_plane, running_operator
from control_plane.processes import free_port
from ray_operator.helm_values import raycluster_from_values
from tests.conftest import CRD_FILE, ROOT, load_yaml

ARGS = ("cluster.ray.io", "v1", NAMESPACE, "rayclusters")
HEALTH_LIMIT = 1.0
OUTCOME_SECONDS = 30.0


class Health:
    """/healthz asked every 0.2 s from a thread of its own; answers slower than HEALTH_LIMIT (or none) recorded."""

    def __init__(self, url: str) -> None:
        self.url, self.failures = url, []
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


def run(count: int, seed: int, batch: int, work: Path) -> dict[str, Any]:
    example = raycluster_from_values(load_yaml(ROOT / "values/cpu-only.yaml"), "fz", NAMESPACE)
    schema = load_yaml(CRD_FILE)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    found = {"mutations": 0, "refused": 0, "error": 0, "valid": 0, "violations": []}
    violations: list[str] = found["violations"]
    health_port = free_port()
    with bench_control_plane(work) as (plane, client), running_operator(
        plane, work, "--health-port", str(health_port)
    ) as operator:
        custom, core = kubernetes.client.CustomObjectsApi(client), kubernetes.client.CoreV1Api(client)
        _wait(lambda: _health_answers(health_port), 30)
        health = Health(f"http://127.0.0.1:{health_port}/healthz")
        drawn = list(mutations(example, schema, seed, count))
        for start in range(0, len(drawn), batch):
            admitted: dict[str, str] = {}  # name → the mutation
            for index, mutation in enumerate(drawn[start : start + batch], start):
                body = mutation.raycluster
                body.setdefault("metadata", {})
                if isinstance(body["metadata"], dict) and body["metadata"].get("name") == "fz":
                    body["metadata"]["name"] = f"fz-{index}"
                name = body["metadata"].get("name") if isinstance(body["metadata"], dict) else None
                found["mutations"] += 1
                try:
                    created = custom.create_namespaced_custom_object(*ARGS, json.loads(json.dumps(body, default=str)))
                except (ApiException, ValueError):
                    found["refused"] += 1  # refused at admission (or not JSON at all: no client sends it)
                    continue
                admitted[created["metadata"]["name"]] = f"{mutation.path}: {mutation.what} (name {name!r:.30})"
            outcomes = _outcomes(custom, core, admitted)
            for name, what in admitted.items():
                if name not in outcomes:
                    violations.append(f"{what}: neither Error with a message nor a head pod ({_phase(custom, name)})")
            found["error"] += sum(outcome == "Error" for outcome in outcomes.values())
            found["valid"] += sum(outcome == "valid" for outcome in outcomes.values())
            canary = f"canary-{start}"
            custom.create_namespaced_custom_object(*ARGS, {**example, "metadata": {"name": canary}})
            if not _wait(lambda: _head_made(core, canary) and _phase(custom, canary)[0], 10):
                violations.append(f"the canary after mutation {start} got no head pod or status within 10 s")
            for name in [*admitted, canary]:
                custom.delete_namespaced_custom_object(*ARGS, name)
            left = lambda names=[*admitted, canary]: _leftovers(core, work, names)  # noqa: E731
            if not _wait(lambda: not left(), 120):
                violations.append(f"left behind after delete: {left()}")
            if operator.poll() is not None:
                violations.append(f"the operator exited with code {operator.returncode}")
                break
        violations += health.stop()
    return found


def _outcomes(custom: Any, core: Any, names: dict[str, str]) -> dict[str, str]:
    """Each cluster's outcome once it has one: "Error" (with a message) or "valid" (its head pod made); a LIST of
    the namespace's RayClusters and head pods every half second, for at most OUTCOME_SECONDS."""
    outcomes: dict[str, str] = {}
    deadline = time.monotonic() + OUTCOME_SECONDS
    while len(outcomes) < len(names) and time.monotonic() < deadline:
        for item in custom.list_namespaced_custom_object(*ARGS)["items"]:
            status = item.get("status") or {}
            if item["metadata"]["name"] in names and status.get("phase") == "Error" and status.get("message"):
                outcomes[item["metadata"]["name"]] = "Error"
        for pod in core.list_namespaced_pod(NAMESPACE, label_selector="ray-node-type=head").items:
            name = pod.metadata.labels.get("ray-cluster-name")
            if name in names:
                outcomes.setdefault(name, "valid")
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
    left = [f"pod {p.metadata.name}" for p in core.list_namespaced_pod(NAMESPACE, label_selector="ray-cluster-name").items
            if p.metadata.labels["ray-cluster-name"] in gone]
    left += [f"Service {s.metadata.name}"
             for s in core.list_namespaced_service(NAMESPACE, label_selector="ray-cluster-name").items
             if s.metadata.labels["ray-cluster-name"] in gone]
    left += [f"Secret {s.metadata.name}" for s in core.list_namespaced_secret(NAMESPACE).items
             if s.metadata.name.removesuffix("-ray-auth") in gone]
    left += [f"work dir of {name}" for name in names if (work / "operator" / f"{NAMESPACE}.{name}").exists()]
    return left


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mutations", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=100, help="mutations created at once")
    args = parser.parse_args()
    sys.setrecursionlimit(20_000)  # this client encodes the deepest nestings (5,000 levels) as any Go client would
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as work:
        found = run(args.mutations, args.seed, args.batch, Path(work))
    for violation in found["violations"]:
        print(f"violation: {violation}")
    print(f"fuzz: {found['mutations']} mutations, {found['refused']} refused at admission, {found['error']} Error, "
          f"{found['valid']} valid, {len(found['violations'])} invariant violations", flush=True)


if __name__ == "__main__":
    main()
