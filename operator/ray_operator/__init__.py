"""The Ray operator for Kubernetes: runs one Ray autoscaler per RayCluster (cluster.ray.io/v1)."""

__version__ = "0.2.0"
