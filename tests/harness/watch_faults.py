"""Where the operator's view of the API server is made to fail: a TLS proxy between the operator and kube-apiserver
that passes every request through and, on demand, breaks what the client sees of the watches.

The faults (issue 25, after Sieve's), which strike the watches already open too: `cut` ends every watch abruptly (the
connection closed mid-stream, no terminating chunk) a random 0.2–`cut` s after it opened or the fault was set;
`delay` holds each watch event that many seconds before passing it on, as a lagging API server does; `rewind` opens
every watch from the oldest resourceVersion of that path seen since the faults were set (a LIST's answer, or where a
watch open when they were set had started: the proxy ends such a watch as the server ends one at its timeout, so
that the client opens it again), so the server replays changes the client has already seen (or answers 410 Gone
once etcd compacted them, and the rewinding starts again from the LIST that follows); `refuse_lists` closes the
connection of every LIST, as a server that is down does, so a cache cannot sync. They combine, and change while the
proxy runs: `proxy.faults = WatchFaults(delay=3)`; `WatchFaults()` is none.

The operator is pointed at it with `proxy.kubeconfig(path)`: the control plane's admin token and CA (the proxy serves
the API server's own certificate, which names 127.0.0.1).
"""

from __future__ import annotations

import http.client
import json
import queue
import random
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from control_plane import ControlPlane
from kube_apiserver.kubeconfig import write_kubeconfig

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade"}
TICK_SECONDS = 0.1  # how often an open watch looks at the faults again
UPSTREAM_SECONDS = 30.0  # a request's bound upstream; a watch's reads are bounded by its own timeoutSeconds


@dataclass(frozen=True)
class WatchFaults:
    cut: float = 0.0  # > 0: each watch is cut after a random 0.2–cut s
    delay: float = 0.0  # each watch event passed on this many seconds late
    rewind: bool = False  # each watch opened from the oldest resourceVersion listed for its path
    refuse_lists: bool = False  # every LIST's connection closed unanswered


class _QuietServer(ThreadingHTTPServer):
    """A thread per connection, none of them keeping the process alive."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went mid-handshake or mid-request (an operator stopped): nothing to report."""


@dataclass(frozen=True)
class _Opened:
    """A watch as the proxy opened it: its path, the resourceVersion its client asked for, the faults' generation
    then, and whether the proxy rewound it."""

    path: str
    asked: str
    generation: int
    rewound: bool


class _Cut(Exception):
    """The proxy closes the client's connection without an answer or mid-stream."""


class WatchFaultProxy:
    """The proxy on a free loopback port for `plane`'s kube-apiserver, serving until stop()."""

    def __init__(self, plane: ControlPlane, seed: int = 0) -> None:
        self.plane = plane
        self._faults = WatchFaults()
        self.counts = {"watches": 0, "cut": 0, "delayed": 0, "rewound": 0, "lists refused": 0}
        self.open_watches = 0
        self._random = random.Random(seed)
        self._oldest: dict[str, str] = {}  # a collection's path → the oldest resourceVersion seen since the faults
        self._generation = 0  # how many times the faults were set
        self._lock = threading.Lock()
        self._upstream = ssl.create_default_context(cadata=plane.ca_pem.decode())
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        served.load_cert_chain(plane.work / "apiserver.crt", plane.work / "apiserver.key")
        self._server.socket = served.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="watch-fault proxy")
        self._thread.start()

    @property
    def faults(self) -> WatchFaults:
        return self._faults

    @faults.setter
    def faults(self, faults: WatchFaults) -> None:
        with self._lock:
            self._faults = faults
            self._oldest.clear()
            self._generation += 1

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig for the admin through this proxy."""
        return write_kubeconfig(path, self.url, self.plane.admin_token, "default", self.plane.ca_pem)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

            def do_GET(self) -> None:  # noqa: N802 - the base class's name
                self._forward()

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815

            def _forward(self) -> None:
                try:
                    proxy._forward(self)
                except (_Cut, OSError, http.client.HTTPException):
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        return Handler

    def _forward(self, client: BaseHTTPRequestHandler) -> None:
        faults = self.faults
        path, _, query = client.path.partition("?")
        params = dict(urllib.parse.parse_qsl(query))
        watch = params.get("watch") in ("true", "1")
        listing = client.command == "GET" and not watch and _is_collection(path)
        if listing and faults.refuse_lists:
            self._count("lists refused")
            raise _Cut
        asked = params.get("resourceVersion", "")
        with self._lock:
            generation = self._generation
            oldest = self._oldest.get(path) if watch and faults.rewind else None
        if oldest and oldest != asked:
            params["resourceVersion"] = oldest
            self._count("rewound")
        length = int(client.headers.get("Content-Length") or 0)
        body = client.rfile.read(length) if length else None
        headers = {k: v for k, v in client.headers.items() if k.lower() not in HOP_HEADERS}
        upstream = http.client.HTTPSConnection(
            "127.0.0.1", self.plane.port, context=self._upstream, timeout=None if watch else UPSTREAM_SECONDS
        )
        try:
            upstream.request(client.command, f"{path}?{urllib.parse.urlencode(params)}", body, headers)
            response = upstream.getresponse()
            if watch and response.status == 200:
                self._stream(client, response, _Opened(path, asked, generation, rewound=bool(oldest)))
                return
            data = response.read()
            if listing and response.status == 200:
                self._note_listed(path, data)
            client.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in HOP_HEADERS:
                    client.send_header(key, value)
            client.send_header("Content-Length", str(len(data)))
            client.end_headers()
            client.wfile.write(data)
        finally:
            upstream.close()

    def _note_listed(self, path: str, data: bytes) -> None:
        try:
            version = json.loads(data)["metadata"]["resourceVersion"]
        except (ValueError, KeyError, TypeError):
            return
        with self._lock:
            self._oldest.setdefault(path, version)

    def _stream(self, client: BaseHTTPRequestHandler, response: http.client.HTTPResponse, opened: _Opened) -> None:
        """The watch's events to the client, chunked, under the faults as they are at each moment (a fault set while
        a watch is open strikes it too): each event `delay` late, the watch cut `cut` at most after the cutting began,
        ended once `rewind` is set (its path to be rewound to where it started). A rewound watch that the server finds
        too old (410) lets its path be rewound from its next LIST."""
        self._count("watches")
        with self._lock:
            self.open_watches += 1
        try:
            self._pass_events(client, response, opened)
        finally:
            with self._lock:
                self.open_watches -= 1

    def _rewinding_since_opened(self, opened: _Opened) -> bool:
        """Whether `rewind` was set after the watch opened; if so its path is to be rewound to where it started."""
        with self._lock:
            if not self._faults.rewind or self._generation == opened.generation:
                return False
            if opened.asked:
                self._oldest.setdefault(opened.path, opened.asked)
            return True

    def _pass_events(self, client: BaseHTTPRequestHandler, response: http.client.HTTPResponse, opened: _Opened) -> None:
        client.send_response(200)
        for key, value in response.getheaders():
            if key.lower() not in HOP_HEADERS:
                client.send_header(key, value)
        client.send_header("Transfer-Encoding", "chunked")
        client.end_headers()
        client.wfile.flush()
        events: queue.Queue[tuple[float, bytes]] = queue.Queue()
        threading.Thread(target=_read_lines, args=(response, events), daemon=True).start()
        cut_at: float | None = None
        pending: tuple[float, bytes] | None = None
        while True:
            faults, now = self.faults, time.monotonic()
            if faults.cut <= 0:
                cut_at = None
            elif cut_at is None:
                cut_at = now + self._random.uniform(0.2, faults.cut)
            if cut_at is not None and now >= cut_at:
                self._count("cut")
                raise _Cut
            if self._rewinding_since_opened(opened):  # ended as the server ends a watch, to be opened again rewound
                pending = (now, b"")
            if pending is None:
                try:
                    pending = events.get(timeout=TICK_SECONDS)
                except queue.Empty:
                    continue
            read_at, line = pending
            if not line:  # the server (or the proxy, for rewind) ended the watch
                client.wfile.write(b"0\r\n\r\n")
                client.wfile.flush()
                return
            if now < read_at + faults.delay:
                time.sleep(min(TICK_SECONDS, read_at + faults.delay - now))
                continue
            if faults.delay:
                self._count("delayed")
            if opened.rewound and line.startswith(b'{"type":"ERROR"') and b"410" in line:
                with self._lock:
                    self._oldest.pop(opened.path, None)
            client.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            client.wfile.flush()
            pending = None


def _read_lines(response: http.client.HTTPResponse, events: queue.Queue[tuple[float, bytes]]) -> None:
    """Each line of a watch's response as it arrives, with when; an empty line once the server ended it."""
    try:
        while line := response.readline():
            events.put((time.monotonic(), line))
    except Exception:  # noqa: BLE001 - the proxy closed the connection under it (its client went): the watch is over
        pass
    events.put((time.monotonic(), b""))


def _is_collection(path: str) -> bool:
    """Whether a path names a collection (`/api/v1/namespaces/ns/pods`), not one object or a discovery document:
    core paths have an odd number of segments after /api, group ones after /apis/<group>/<version>."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        return len(parts) % 2 == 1
    if parts[:1] == ["apis"] and len(parts) >= 4:
        return len(parts) % 2 == 0
    return False
