"""The bridge between a RayCluster and the Ray autoscaler.

`cluster_config` turns a RayCluster into the Ray autoscaler cluster config that
runs it, `validation` says precisely what is wrong with a RayCluster, and the
node provider (loaded by the autoscaler through `provider.type: external`)
turns the autoscaler's decisions into Kubernetes pods.
"""
