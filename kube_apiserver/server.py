"""The HTTP face of the API: Kubernetes REST paths, discovery, watch streams, Status errors.

`ApiServer` binds to loopback (or another address a test owns), serves the
`Api` in threads, and can save its objects to a file on stop and load them on
start, so that a restart keeps the cluster's state as etcd would.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kube_apiserver import errors, openapi, protobuf
from kube_apiserver.api import Api, Validation
from kube_apiserver.auth import Authenticator, Authorizer, Request, User
from kube_apiserver.errors import ApiError
from kube_apiserver.kubeconfig import write_kubeconfig
from kube_apiserver.registry import ResourceType
from kube_apiserver.store import Store
from kube_apiserver.tables import table
from kube_apiserver.tls import make_certificates

log = logging.getLogger(__name__)

SERVER_VERSION = {
    "major": "1",
    "minor": "35",
    "gitVersion": "v1.35.0",
    "gitCommit": "kube-apiserver-for-tests",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.25",
    "compiler": "gc",
    "platform": "linux/amd64",
}
DEFAULT_WATCH_TIMEOUT = 1800.0


class _Route:
    def __init__(self, group: str, version: str, rest: list[str]) -> None:
        self.group, self.version = group, version
        self.namespace: str | None = None
        self.plural: str | None = None
        self.name: str | None = None
        self.subresource: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces" and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
            self.namespace, rest = rest[1], rest[2:]
        if rest:
            self.plural = rest[0]
        if len(rest) > 1:
            self.name = rest[1]
        if len(rest) > 2:
            self.subresource = "/".join(rest[2:])


def _split(path: str) -> tuple[str, str, list[str]] | None:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        return "", parts[1], parts[2:]
    if len(parts) >= 3 and parts[0] == "apis":
        return parts[1], parts[2], parts[3:]
    return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer
    user: User

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s %s", self.address_string(), format % args)

    # Plumbing.
    def _query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}

    def _body(self) -> bytes:
        return self._raw_body

    def _json_body(self) -> Any:
        raw = self._body()
        content_type = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if content_type == protobuf.CONTENT_TYPE:
            try:
                return protobuf.decode(raw)
            except protobuf.UnsupportedProtobuf:
                raise errors.unsupported_media_type(content_type) from None
        if content_type not in ("application/json", "application/yaml", "*/*", ""):
            raise errors.unsupported_media_type(content_type)
        if not raw:
            return None
        try:
            if content_type == "application/yaml":
                import yaml

                return yaml.safe_load(raw)
            return json.loads(raw)
        except ValueError as error:
            raise errors.bad_request(f"couldn't get version/kind; json parse error: {error}") from None

    def _send(self, code: int, body: Any, content_type: str = "application/json", warnings: list[str] = ()) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        for warning in warnings:
            self.send_header("Warning", f'299 - "{warning}"')
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, error: ApiError) -> None:
        self._send(error.code, error.status())

    def _dispatch(self) -> None:
        self.server.request_log.append((self.command, urlsplit(self.path).path, self.headers.get("User-Agent", "")))
        # Read the whole body first: an early error answer must not leave it on the kept-alive connection.
        length = int(self.headers.get("Content-Length") or 0)
        self._raw_body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
        try:
            self._route()
        except ApiError as error:
            self._error(error)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as error:  # noqa: BLE001 - a server answers 500, it does not die
            log.exception("internal error on %s %s", self.command, self.path)
            self._error(ApiError(500, "InternalError", f"Internal error occurred: {error}"))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    # Routing.
    def _route(self) -> None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        if path in ("/healthz", "/readyz", "/livez"):
            return self._send(200, b"ok", "text/plain")
        if path == "/version":
            return self._send(200, SERVER_VERSION)
        self.user = self.server.authenticator.user(self.headers.get("Authorization"))
        if "system:authenticated" not in self.user.groups and (
            path in ("/api", "/apis") or path.startswith("/openapi")
        ):
            raise ApiError(
                403, "Forbidden", f'forbidden: User "{self.user.name}" cannot get path "{path}"'
            )  # system:discovery
        if path == "/api":
            host, port = self.server.server_address[:2]
            return self._send(
                200,
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": f"{host}:{port}"}],
                },
            )
        if path == "/apis":
            return self._send(200, self._group_list())
        if path == "/openapi/v3":
            return self._send(200, openapi.root(self.server.api.types.values()))
        if path.startswith("/openapi/v3/"):
            wanted = path[len("/openapi/v3/") :]
            members = [t for t in self.server.api.types.values() if openapi.group_version_path(t) == wanted]
            if not members:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return self._send(200, openapi.document(members))
        parts = [p for p in path.split("/") if p]
        if len(parts) == 2 and parts[0] == "apis":
            group = next((g for g in self._group_list()["groups"] if g["name"] == parts[1]), None)
            if group is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return self._send(200, {"kind": "APIGroup", "apiVersion": "v1", **group})
        split = _split(path)
        if split is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        route = _Route(*split)
        if route.plural is None:
            return self._send(200, self._resource_list(route.group, route.version))
        self._resource(route)

    def _group_list(self) -> dict[str, Any]:
        groups: dict[str, list[str]] = {}
        for resource_type in self.server.api.types.values():
            if resource_type.group:
                versions = groups.setdefault(resource_type.group, [])
                if resource_type.version not in versions:
                    versions.append(resource_type.version)
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": name,
                    "versions": [{"groupVersion": f"{name}/{v}", "version": v} for v in versions],
                    "preferredVersion": {"groupVersion": f"{name}/{versions[0]}", "version": versions[0]},
                }
                for name, versions in sorted(groups.items())
            ],
        }

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        resources = [
            entry
            for t in self.server.api.types.values()
            if t.group == group and t.version == version
            for entry in t.discovery()
        ]
        if not resources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        group_version = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}

    def _wants_table(self) -> bool:
        return "as=Table" in (self.headers.get("Accept") or "")

    def _resource(self, route: _Route) -> None:
        api = self.server.api
        rt = api.resolve(route.group, route.version, route.plural or "")
        if rt.namespaced and route.namespace is None and route.name is not None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        namespace = route.namespace if rt.namespaced else None
        query = self._query()
        if route.subresource and route.subresource not in rt.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        method = self.command
        self._authorize(rt, route, query)
        dry_run = query.get("dryRun") == "All"
        validation = Validation(query.get("fieldValidation"))
        if route.name is None:
            if method in ("GET", "HEAD"):
                if query.get("watch") in ("true", "1"):
                    return self._watch(rt, namespace, query)
                listed = api.list(
                    rt,
                    namespace,
                    query.get("labelSelector"),
                    query.get("fieldSelector"),
                    int(query["limit"]) if query.get("limit") else None,
                    query.get("continue"),
                )
                if self._wants_table():
                    return self._send(
                        200, table(rt, listed["items"], listed["metadata"], query.get("includeObject", "Metadata"))
                    )
                return self._send(200, listed)
            if method == "POST" and rt.kind == "SelfSubjectAccessReview":
                return self._send(201, self._access_review(self._json_body() or {}))
            if method == "POST":
                if rt.namespaced and namespace is None:
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
                created = api.create(rt, namespace, self._json_body(), dry_run, validation)
                return self._send(201, created, warnings=validation.warnings)
            if method == "DELETE":
                return self._send(
                    200,
                    api.delete_collection(
                        rt,
                        namespace,
                        query.get("labelSelector"),
                        query.get("fieldSelector"),
                        self._delete_options(query),
                    ),
                )
            raise errors.method_not_allowed("the server does not allow this method on the requested resource")
        name = route.name
        sub = route.subresource
        if sub == "token" and method == "POST":
            api.get(rt, namespace, name)
            request = self._json_body() or {}
            return self._send(
                201,
                {
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenRequest",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": request.get("spec") or {},
                    "status": {
                        "token": self.server.authenticator.issue(namespace or "", name),
                        "expirationTimestamp": "2099-01-01T00:00:00Z",
                    },
                },
            )
        if sub == "binding" and method == "POST":
            return self._send(201, api.bind(namespace or "", name, self._json_body() or {}))
        if sub == "log":
            return self._send(200, self.server.pod_log(namespace, name, query), "text/plain")
        if method in ("GET", "HEAD"):
            obj = api.get(rt, namespace, name)
            if self._wants_table():
                return self._send(
                    200,
                    table(
                        rt,
                        [obj],
                        {"resourceVersion": obj["metadata"]["resourceVersion"]},
                        query.get("includeObject", "Metadata"),
                    ),
                )
            return self._send(200, obj)
        if method == "PUT":
            updated = api.update(rt, namespace, name, self._json_body(), sub, dry_run, validation)
            return self._send(200, updated, warnings=validation.warnings)
        if method == "PATCH":
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            patched = api.patch(
                rt, namespace, name, content_type, self._body(), sub, query.get("fieldManager"), dry_run, validation
            )
            return self._send(200, patched, warnings=validation.warnings)
        if method == "DELETE":
            return self._send(200, api.delete(rt, namespace, name, self._delete_options(query)))
        raise errors.method_not_allowed("the server does not allow this method on the requested resource")

    def _authorize(self, rt: ResourceType, route: _Route, query: dict[str, str]) -> None:
        method = self.command
        if method in ("GET", "HEAD"):
            verb = "get" if route.name else ("watch" if query.get("watch") in ("true", "1") else "list")
        else:
            verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, "delete")
            if method == "DELETE" and route.name is None:
                verb = "deletecollection"
        self.server.authorizer.check(
            self.user,
            Request(
                verb, rt.group, rt.plural, route.subresource, route.namespace if rt.namespaced else None, route.name
            ),
        )

    def _access_review(self, review: dict[str, Any]) -> dict[str, Any]:
        """`kubectl auth can-i`: may the caller do what the review describes? Nothing is stored."""
        attributes = (review.get("spec") or {}).get("resourceAttributes") or {}
        request = Request(
            attributes.get("verb", ""),
            attributes.get("group", ""),
            attributes.get("resource", ""),
            attributes.get("subresource") or None,
            attributes.get("namespace") or None,
            attributes.get("name") or None,
        )
        allowed = self.server.authorizer.allowed(self.user, request)
        return {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "metadata": {},
            "spec": review.get("spec") or {},
            "status": {"allowed": allowed},
        }

    def _delete_options(self, query: dict[str, str]) -> dict[str, Any]:
        """DeleteOptions from the body when one is sent, else from the query parameters: never both, as
        kube-apiserver reads them (a grace period in the query beside a body is ignored)."""
        if self._body():
            return self._json_body() or {}
        options: dict[str, Any] = {}
        if "propagationPolicy" in query:
            options["propagationPolicy"] = query["propagationPolicy"]
        if "gracePeriodSeconds" in query:
            options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
        if "orphanDependents" in query:
            options["orphanDependents"] = query["orphanDependents"] == "true"
        if query.get("dryRun") == "All":
            options["dryRun"] = ["All"]
        return options

    def _watch(self, rt: ResourceType, namespace: str | None, query: dict[str, str]) -> None:
        timeout = float(query.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
        events = self.server.api.watch(
            rt,
            namespace,
            query.get("labelSelector"),
            query.get("fieldSelector"),
            query.get("resourceVersion"),
            timeout,
            query.get("allowWatchBookmarks") in ("true", "1"),
            self.server.stopping.is_set,
            query.get("sendInitialEvents") == "true",
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()
        try:
            for event in events:
                self._chunk(event)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    def _chunk(self, event: dict[str, Any]) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    connections: set[Any]

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (a closed watch, a killed process) is normal; anything else is printed."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Drop every open connection, as a stopping server process does."""
        for connection in list(self.connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    api: Api
    stopping: threading.Event
    request_log: deque[tuple[str, str, str]]  # method, path, User-Agent
    authenticator: Authenticator
    authorizer: Authorizer

    def pod_log(self, namespace: str | None, name: str, query: dict[str, str]) -> bytes:
        pod = self.api.get(self.api.resolve("", "v1", "pods"), namespace, name)
        path = (pod["metadata"].get("annotations") or {}).get("pod-runtime.local/log-file")
        if not path or not Path(path).exists():
            return b""
        data = Path(path).read_bytes()
        if query.get("tailLines"):
            data = b"".join(data.splitlines(keepends=True)[-int(query["tailLines"]) :])
        return data


class ApiServer:
    """A running API server: `url`, `api` (for in-process tests), `stop()`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        data_file: Path | None = None,
        history_limit: int = 10000,
        bookmark_interval: float = 5.0,
        admin_token: str | None = None,
    ) -> None:
        """`admin_token` turns authentication, RBAC and TLS on; without it every request is the admin's, over HTTP."""
        store = Store(history_limit=history_limit)
        self.data_file = data_file
        loaded = data_file is not None and data_file.exists()
        if loaded:
            for _ in store.load(data_file):
                pass
        self.api = Api(store, bookmark_interval=bookmark_interval)
        if loaded:
            self.api.restore_crds()
        self._httpd = _HttpServer((host, port), _Handler)
        self._httpd.api = self.api
        self._httpd.stopping = threading.Event()
        self._httpd.connections = set()
        self._httpd.request_log = deque(maxlen=100000)
        self.admin_token = admin_token
        self._httpd.authenticator = Authenticator(admin_token)
        self._httpd.authorizer = Authorizer(self.api)
        self.certificates = make_certificates(host) if admin_token else None
        if self.certificates:
            self._httpd.socket = self.certificates.server_context().wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="kube-apiserver", daemon=True
        )

    def token_for(self, namespace: str, service_account: str) -> str:
        """A token for a ServiceAccount, as the TokenRequest API issues."""
        return self._httpd.authenticator.issue(namespace, service_account)

    @property
    def request_log(self) -> deque[tuple[str, str, str]]:
        """(method, path, User-Agent) of the latest requests, for tests and benchmarks that count them."""
        return self._httpd.request_log

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"{'https' if self.certificates else 'http'}://{host}:{port}"

    def write_kubeconfig(self, path: Path, token: str | None = None, namespace: str = "default") -> Path:
        """A kubeconfig for this server: the admin's, or for `token` (e.g. a ServiceAccount's)."""
        return write_kubeconfig(
            path,
            self.url,
            token or self.admin_token,
            namespace,
            self.certificates.ca_pem if self.certificates else None,
        )

    def start(self) -> ApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_connections()
        self.api.collector.stop()
        if self.data_file is not None:
            self.api.store.save(self.data_file)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
