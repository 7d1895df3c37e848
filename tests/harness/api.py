"""How the tests talk to an API server (the project's or a control plane) beyond the client's models: the CRD
applied, a RayCluster created, raw HTTP requests as the admin."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from tests.harness.files import CRD_FILE, load_yaml
from tests.harness.waiting import wait_for


def apply_crd(client, exist_ok: bool = False, crd: dict | None = None) -> None:
    """The RayCluster CRD (or `crd`), once Established (a real API server serves its resource only from then on)."""
    extensions = kubernetes.client.ApiextensionsV1Api(client)
    definition: Any = crd or load_yaml(CRD_FILE)  # the client takes a manifest as it takes its model
    try:
        extensions.create_custom_resource_definition(definition)
    except ApiException as error:
        if not (exist_ok and error.status == 409):
            raise
    wait_for(
        lambda: any(
            c.type == "Established" and c.status == "True"
            for c in extensions.read_custom_resource_definition(definition["metadata"]["name"]).status.conditions or []
        ),
        timeout=30,
        message="the RayCluster CRD established",
    )


def create_raycluster(client, raycluster: dict) -> dict:
    """Create a RayCluster (and its namespace if needed) in the API; returns it as stored."""
    namespace = raycluster["metadata"].get("namespace", "default")
    core = kubernetes.client.CoreV1Api(client)
    if namespace not in [n.metadata.name for n in core.list_namespace().items]:
        core.create_namespace(kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=namespace)))
    created: Any = kubernetes.client.CustomObjectsApi(client).create_namespaced_custom_object(
        "cluster.ray.io", "v1", namespace, "rayclusters", raycluster
    )
    return created


def urlopen(server, request):
    """urllib's urlopen of `request` as the admin of `server` (the project's or a control plane), trusting its CA."""
    ca = server_ca(server)
    if server.admin_token:
        request.add_header("Authorization", f"Bearer {server.admin_token}")
    return urllib.request.urlopen(
        request, timeout=10, context=ssl.create_default_context(cadata=ca.decode()) if ca else None
    )


def server_ca(server) -> bytes:
    """The CA that clients of `server` (the project's or a control plane) trust; empty when it serves plain HTTP."""
    certificates = getattr(server, "certificates", None)
    return certificates.ca_pem if certificates else getattr(server, "ca_pem", b"")


def raw_request(server, method: str, path: str, body=None, content_type: str = "application/json", headers=None):
    """An HTTP request as a client library would send it, as the admin; returns (status, parsed JSON body)."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        server.url + path,
        method=method,
        data=data,
        headers={"Content-Type": content_type, "Accept": "application/json", **(headers or {})},
    )
    try:
        with urlopen(server, request) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
