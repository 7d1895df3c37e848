"""Ray token authentication as data: what each podType's Ray container gets, the status, the version checks."""

from __future__ import annotations

import pytest

from autoscaler_bridge import ray_auth
from ray_operator.monitor_process import missing_token_auth, unsupported_ray_version

SECRET_REF = {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "c-ray-auth", "key": "token"}}}


def pod_config(*env: dict) -> dict:
    return {"spec": {"containers": [{"name": "sidecar"}, {"name": "ray-node", "env": list(env)}]}}


@pytest.mark.parametrize(
    "mode, env, added",
    [
        ("token", [], [{"name": "RAY_AUTH_MODE", "value": "token"}, SECRET_REF]),
        ("disabled", [], [{"name": "RAY_AUTH_MODE", "value": "disabled"}]),
        # The template's own mode wins; a token it brings (or a path to one) too.
        ("token", [{"name": "RAY_AUTH_MODE", "value": "disabled"}], []),
        ("disabled", [{"name": "RAY_AUTH_MODE", "value": "token"}], [SECRET_REF]),
        ("token", [{"name": "RAY_AUTH_TOKEN", "value": "mine"}], [{"name": "RAY_AUTH_MODE", "value": "token"}]),
        ("token", [{"name": "RAY_AUTH_TOKEN_PATH", "value": "/t"}], [{"name": "RAY_AUTH_MODE", "value": "token"}]),
    ],
)
def test_what_a_ray_container_gets(mode, env, added):
    assert ray_auth.auth_env(mode, "c", pod_config(*env)) == added


def raycluster(mode: str | None, head_env=(), worker_env=()) -> dict:
    spec = {
        "headPodType": "head",
        "podTypes": [
            {"name": "head", "podConfig": pod_config(*head_env)},
            {"name": "worker", "podConfig": pod_config(*worker_env)},
        ],
    }
    if mode:
        spec["rayAuthentication"] = mode
    return {"metadata": {"name": "c", "namespace": "ns"}, "spec": spec}


def test_a_legacy_manifest_gets_token_and_the_status_says_how_to_submit():
    status = ray_auth.status(raycluster(None))
    assert status == {
        "mode": "token",
        "secretName": "c-ray-auth",
        "submitJob": "RAY_AUTH_MODE=token RAY_AUTH_TOKEN=$(kubectl -n ns get secret c-ray-auth "
        "-o jsonpath='{.data.token}' | base64 -d) "
        "ray job submit --address http://c-ray-head.ns.svc.cluster.local:8265 -- <command>",
    }


@pytest.mark.parametrize(
    "cluster, expected",
    [
        (raycluster("disabled"), {"mode": "disabled"}),
        (
            raycluster("token", head_env=[{"name": "RAY_AUTH_MODE", "value": "disabled"}]),
            {
                "mode": "disabled",
                "secretName": "c-ray-auth",
                "message": "podType head sets RAY_AUTH_MODE=disabled, which wins over rayAuthentication token",
            },
        ),
        (
            raycluster("disabled", worker_env=[{"name": "RAY_AUTH_MODE", "value": "token"}]),
            {
                "mode": "disabled",
                "secretName": "c-ray-auth",
                "message": "podType worker sets RAY_AUTH_MODE=token, which wins over rayAuthentication disabled",
            },
        ),
    ],
)
def test_status_names_what_the_template_overrides(cluster, expected):
    assert ray_auth.status(cluster) == expected


def test_a_head_that_brings_its_token_gives_it_to_the_autoscaler():
    cluster = raycluster("token", head_env=[{"name": "RAY_AUTH_TOKEN", "value": "mine"}])
    assert ray_auth.head_token(cluster) == "mine"
    assert "submitJob" not in ray_auth.status(cluster)  # the Secret is not the head's token
    assert ray_auth.head_token(raycluster("token")) is None


@pytest.mark.parametrize(
    "version, mode, refused",
    [
        ("2.51.0", "token", True),
        ("2.50.1", "token", True),
        ("2.52.0", "token", False),
        ("2.60.0", "token", False),
        ("2.51.0", "disabled", False),
    ],
)
def test_token_authentication_needs_ray_2_52(version, mode, refused):
    why = missing_token_auth(version, mode)
    assert unsupported_ray_version(version) is None
    assert bool(why) == refused
    if refused:
        assert f"runs Ray {version}, which has no token authentication (first in Ray 2.52)" in why
        assert "Use an image with Ray 2.52 or newer, or set rayAuthentication: disabled" in why


def test_a_head_token_from_the_users_secret_is_read_by_the_autoscaler_too():
    mine = {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "team-token", "key": "t"}}}
    cluster = raycluster("token", head_env=[mine])
    assert ray_auth.head_token(cluster) is None and ray_auth.head_token_secret(cluster) == ("team-token", "t")
    assert "get secret team-token -o jsonpath='{.data.t}'" in ray_auth.status(cluster)["submitJob"]
    assert ray_auth.head_token_secret(raycluster("token")) is None


@pytest.mark.parametrize(
    "env, problem",
    [
        (
            [{"name": "RAY_AUTH_TOKEN_PATH", "value": "/t"}],
            "RAY_AUTH_TOKEN_PATH: the autoscaler cannot read a token from a file",
        ),
        (
            [{"name": "RAY_AUTH_TOKEN", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}],
            "RAY_AUTH_TOKEN: the autoscaler reads the head's token from a Secret",
        ),
        ([{"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}], None),
        ([{"name": "RAY_AUTH_TOKEN", "value": "mine"}], None),
        ([{"name": "RAY_AUTH_TOKEN_PATH", "value": "/t"}, {"name": "RAY_AUTH_MODE", "value": "disabled"}], None),
    ],
)
def test_a_head_token_the_autoscaler_could_not_read_is_a_problem(env, problem):
    """It was endless head churn: no Secret was made, the autoscaler found none and restarted the cluster."""
    found = ray_auth.token_source_problem("token", pod_config(*env))
    assert (found is None) if problem is None else found.startswith(problem)
