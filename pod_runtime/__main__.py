"""`python -m pod_runtime`: run pods of the API server in the kubeconfig until SIGTERM, then clean up."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

import kubernetes

from pod_runtime.network import network_kind
from pod_runtime.runtime import PodRuntime


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pod_runtime", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--log-dir", type=Path, required=True, help="containers' output goes here")
    parser.add_argument("--node-name", default="local-node")
    parser.add_argument(
        "--prefix", default="rrt", help="names of the runtime's bridge, namespaces and files start with it"
    )
    parser.add_argument(
        "--network",
        choices=["auto", "netns", "loopback"],
        default="auto",
        help="pod IPs from network namespaces (root) or loopback addresses (any user); auto: by user",
    )
    parser.add_argument("--subnet", help="pod IPs: default 10.244.0.0/16 (netns), 127.244.0.0/16 (loopback)")
    parser.add_argument(
        "--scheduler-binds",
        action="store_true",
        help="a scheduler binds pods to this node (a real control plane); without it the runtime binds them",
    )
    parser.add_argument(
        "--capacity",
        action="append",
        default=[],
        metavar="RESOURCE=QUANTITY",
        help="the node's capacity for a resource instead of the machine's (e.g. cpu=32), repeatable",
    )
    parser.add_argument(
        "--keep",
        action="append",
        default=[],
        metavar="PATH",
        help="a host path under /tmp that pods still see in their private /tmp (e.g. the checkout an installed "
        "operator runs from); the interpreter's own installation is kept anyway; repeatable",
    )
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="IMAGE=DIR",
        help="an image this node has, as a directory of Python packages and bin/ commands (what `pip install "
        "--target DIR` makes), which its containers run before the installed ones (e.g. an earlier version of the "
        "operator); repeatable",
    )
    args = parser.parse_args()
    capacity = dict(item.split("=", 1) for item in args.capacity)
    images = dict(item.split("=", 1) for item in args.image)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s pod-runtime: %(message)s")
    client = kubernetes.config.new_client_from_config(args.kubeconfig)
    runtime = PodRuntime(
        client,
        args.log_dir,
        args.node_name,
        args.prefix,
        network_kind(args.network),
        args.subnet,
        bind_pods=not args.scheduler_binds,
        capacity=capacity,
        keep=args.keep,
        images=images,
    ).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    runtime.stop()


if __name__ == "__main__":
    main()
