"""The `ray-operator` command line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import yaml

from autoscaler_bridge.cluster_config import autoscaler_config
from autoscaler_bridge.validation import InvalidRayCluster
from ray_operator import __version__
from ray_operator.helm_values import is_values_file, raycluster_from_values

EXIT_INVALID = 2


def _rayclusters(path: Path, name: str, namespace: str | None) -> Iterator[dict[str, Any]]:
    """The RayClusters of a manifest file, or the one a Helm values file renders to."""
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    if len(documents) == 1 and is_values_file(documents[0]):
        yield raycluster_from_values(documents[0], name, namespace)
        return
    found = False
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == "RayCluster":
            found = True
            if namespace:
                document.setdefault("metadata", {})["namespace"] = namespace
            yield document
    if not found:
        raise ValueError("no RayCluster in it (nor a Helm values file with a podTypes map)")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ray-operator")
def main() -> None:
    """The Ray operator for Kubernetes: one Ray autoscaler per RayCluster."""


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--name",
    default="example-cluster",
    show_default=True,
    help="Release name to render a Helm values file as (the RayCluster is named after it).",
)
@click.option("--namespace", default=None, help="Namespace to render the RayCluster(s) in.")
def render(file: Path, name: str, namespace: str | None) -> None:
    """Print the Ray autoscaler config a RayCluster manifest (or a Helm values file) becomes.

    Exits 2 listing every problem when a RayCluster cannot be run.
    """
    try:
        rayclusters = list(_rayclusters(file, name, namespace))
    except (yaml.YAMLError, ValueError) as error:
        click.echo(f"{file}: {error}", err=True)
        sys.exit(EXIT_INVALID)
    configs, failed = [], False
    for raycluster in rayclusters:
        label = (raycluster.get("metadata") or {}).get("name", "<unnamed>")
        try:
            configs.append(autoscaler_config(raycluster))
        except InvalidRayCluster as invalid:
            failed = True
            click.echo(f"{file}: RayCluster {label} is invalid:", err=True)
            for problem in invalid.problems:
                click.echo(f"  - {problem}", err=True)
    if failed:
        sys.exit(EXIT_INVALID)
    click.echo(yaml.safe_dump_all(configs, sort_keys=False), nl=False)
