"""Where pods reach the API server: a TCP relay on the pod network's host address to the API server of the
runtime's kubeconfig, exported to every container as KUBERNETES_SERVICE_HOST/_PORT and named `kubernetes.default.svc`
in the pods' hosts files — what kube-proxy's rules and cluster DNS give pods for the `kubernetes` Service. It listens
on the Service's port, 443, where it may (root), else on a free port (clients that assume 443, such as a service-account
login that ignores the port, then cannot reach it). Bytes are relayed as they are (TLS ends at the API server)."""

from __future__ import annotations

import socket
import socketserver
import threading
from urllib.parse import urlsplit

BUFFER = 65536
SERVICE_PORT = 443
SERVICE_NAMES = ["kubernetes.default.svc.cluster.local", "kubernetes.default.svc", "kubernetes.default", "kubernetes"]


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(BUFFER):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (sink, source):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class ApiRelay:
    """Listens on (`host`, a free port) and relays each connection to the API server at `api_url`."""

    def __init__(self, host: str, api_url: str) -> None:
        target = urlsplit(api_url)
        upstream = (target.hostname or "127.0.0.1", target.port or (443 if target.scheme == "https" else 80))

        class Connection(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                try:
                    server_side = socket.create_connection(upstream, timeout=10)
                except OSError:
                    return
                server_side.settimeout(None)
                back = threading.Thread(target=_pump, args=(server_side, self.request), daemon=True)
                back.start()
                _pump(self.request, server_side)
                back.join()
                server_side.close()

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        try:
            self._server = Server((host, SERVICE_PORT), Connection)
        except PermissionError:
            self._server = Server((host, 0), Connection)
        self.host, self.port = host, self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="api relay", daemon=True)

    def start(self) -> ApiRelay:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def environment(self) -> dict[str, str]:
        """What a kubelet puts in every container's environment for the `kubernetes` Service."""
        address = f"tcp://{self.host}:{self.port}"
        return {
            "KUBERNETES_SERVICE_HOST": self.host,
            "KUBERNETES_SERVICE_PORT": str(self.port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(self.port),
            "KUBERNETES_PORT": address,
        }
