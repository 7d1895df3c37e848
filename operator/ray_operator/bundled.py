"""Where the operator finds the files it ships: the Helm chart `charts/ray` (its default values and the RayCluster
CRD) and the example values files of `values/`, reached through the package (`ray_operator/chart` and
`ray_operator/examples` link to them in a checkout; a wheel holds copies), so that an installed operator needs
no checkout."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

import yaml

PACKAGE = files("ray_operator")
CHART = PACKAGE / "chart"
EXAMPLES = PACKAGE / "examples"


def chart_values() -> dict[str, Any]:
    """The chart's values.yaml: the defaults Helm merges a values file over."""
    return yaml.safe_load(CHART.joinpath("values.yaml").read_text())


def crd() -> dict[str, Any]:
    return yaml.safe_load(CHART.joinpath("crds", "cluster.ray.io_rayclusters.yaml").read_text())


def example(name: str) -> Traversable:
    """An example values file, e.g. `cpu-only.yaml`."""
    return EXAMPLES.joinpath(name)
