"""A real Kubernetes control plane for the tests and benchmarks, on loopback: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler, built from pinned Go modules (build.py) and started as processes
(cluster.py), the way Go operators use envtest. Not part of the installed product."""

from control_plane.build import ControlPlaneError, binaries
from control_plane.cluster import ControlPlane

__all__ = ["ControlPlane", "ControlPlaneError", "binaries"]
