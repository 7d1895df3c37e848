"""Where the tests find the project's files: the repository's root, the CRD, the values files and the legacy
manifest, and the RayClusters they make."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ray_operator.helm_values import raycluster_from_values

ROOT = Path(__file__).resolve().parents[2]
VALUES_FILES = sorted((ROOT / "values").glob("*.yaml"))
LEGACY_EXAMPLE = ROOT / "tests" / "data" / "legacy-example-cluster.yaml"
CRD_FILE = ROOT / "crds" / "cluster.ray.io_rayclusters.yaml"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def example_rayclusters() -> list[tuple[str, dict]]:
    """(id, RayCluster) for every example: each values file as the chart renders it, and the legacy manifest."""
    examples = [
        (path.stem, raycluster_from_values(load_yaml(path), name="example-cluster", namespace="ray"))
        for path in VALUES_FILES
    ]
    examples.append(("legacy-manifest", load_yaml(LEGACY_EXAMPLE)))
    return examples
