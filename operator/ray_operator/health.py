"""Where the kubelet asks after the operator: /healthz (liveness: the reconcile workers, ray_operator.work_queue's
pool_health; 500 when every worker has been stuck on one cluster) and /readyz (readiness: the watches have listed
and the operator's Lease is valid; a rolling update waits for it), served from a daemon thread."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)


def serve(
    host: str, port: int, health: Callable[[], dict[str, object]], ready: Callable[[], bool]
) -> ThreadingHTTPServer:
    """Serve the two endpoints on host:port; OSError if it cannot listen there."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body: dict[str, object]
            if self.path == "/healthz":
                try:
                    code, body = 200, {"reconciliation": health()}
                except Exception as error:  # noqa: BLE001 - the probe's answer, not the server's end
                    code, body = 500, {"reconciliation": {"error": str(error)}}
            elif self.path == "/readyz":
                code, body = (200, {"ready": True}) if ready() else (503, {"ready": False})
            else:
                code, body = 404, {}
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
            log.debug(format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name="health").start()
    return server
