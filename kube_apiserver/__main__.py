"""`python -m kube_apiserver`: run the server until interrupted, optionally writing a kubeconfig."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from kube_apiserver.server import ApiServer


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m kube_apiserver", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--data-file", type=Path, help="keep objects across restarts in this file")
    parser.add_argument("--kubeconfig-out", type=Path, help="write a kubeconfig for the server here")
    parser.add_argument("--admin-token", help="require bearer tokens (this one is the admin's) and enforce RBAC")
    args = parser.parse_args()
    server = ApiServer(args.host, args.port, args.data_file, admin_token=args.admin_token).start()
    if args.kubeconfig_out:
        server.write_kubeconfig(args.kubeconfig_out)
    print(f"serving on {server.url}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop()


if __name__ == "__main__":
    main()
