"""Where a real API server reads containers' logs (`kubectl logs`): the node's kubelet endpoint, HTTPS on the
node's address, serving `/containerLogs/<namespace>/<pod>/<container>` with `tailLines`, `limitBytes` and
`follow`. The node status names its port (daemonEndpoints). Like a kubelet started without client
authentication, it serves any caller; it listens only on the pod network's host address."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

FOLLOW_POLL_SECONDS = 0.2


def _tls_context(address: str) -> ssl.SSLContext:
    """A self-signed serving certificate, as a kubelet makes when none is given."""
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{address}@pod-runtime")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as scratch:
        cert_file, key_file = Path(scratch) / "tls.crt", Path(scratch) / "tls.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context.load_cert_chain(cert_file, key_file)
    return context


def tail(data: bytes, lines: int | None, limit: int | None) -> bytes:
    """The last `lines` lines of a log, then at most `limit` bytes of it, as the kubelet cuts them."""
    if lines is not None:
        data = b"".join(data.splitlines(keepends=True)[-lines:]) if lines > 0 else b""
    return data[:limit] if limit is not None else data


class KubeletServer:
    """Serves containers' logs; `log_file(namespace, pod, container)` names a container's log, or None."""

    def __init__(
        self, address: str, log_file: Callable[[str, str, str], Path | None], stopping: threading.Event
    ) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the standard library's name
                url = urlsplit(self.path)
                parts = url.path.strip("/").split("/")
                named = len(parts) == 4 and parts[0] == "containerLogs" and all(p and ".." not in p for p in parts)
                path = log_file(*parts[1:4]) if named else None
                if path is None or not path.exists():
                    self.send_error(404, "container not found")
                    return
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                lines = int(query["tailLines"]) if "tailLines" in query else None
                limit = int(query["limitBytes"]) if "limitBytes" in query else None
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                with open(path, "rb") as log:
                    self.wfile.write(tail(log.read(), lines, limit))
                    while query.get("follow") == "true" and not stopping.is_set():
                        chunk = log.read()
                        if chunk:
                            self.wfile.write(chunk)
                            self.wfile.flush()
                        else:
                            time.sleep(FOLLOW_POLL_SECONDS)

            def log_message(self, *_: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer((address, 0), Handler)
        self._server.daemon_threads = True
        self._server.socket = _tls_context(address).wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="kubelet server", daemon=True)

    def start(self) -> KubeletServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
