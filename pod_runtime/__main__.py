"""`python -m pod_runtime`: run pods of the API server in the kubeconfig until SIGTERM, then clean up."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

import kubernetes

from pod_runtime.runtime import PodRuntime


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pod_runtime", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--log-dir", type=Path, required=True, help="containers' output goes here")
    parser.add_argument("--node-name", default="local-node")
    parser.add_argument("--prefix", default="rrt", help="names of the bridge and network namespaces start with it")
    parser.add_argument("--subnet", default="10.244.0.0/16")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s pod-runtime: %(message)s")
    client = kubernetes.config.new_client_from_config(args.kubeconfig)
    runtime = PodRuntime(client, args.log_dir, args.node_name, args.prefix, args.subnet).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    runtime.stop()


if __name__ == "__main__":
    main()
