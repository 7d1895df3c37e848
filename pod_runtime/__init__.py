"""A kubelet stand-in: runs the pods of a Kubernetes API server as local processes.

Each pod gets a network namespace of its own (a veth pair on a bridge, its own
IP), a PID, mount and UTS namespace (so `ray stop` in one pod sees only that
pod's processes, and `/tmp`, `/dev/shm` and the hostname are its own), and a
hosts file that resolves Service names to the Service's ready endpoints. Any
`rayproject/ray*` image runs on the local Ray installation; other images are
refused with a clear pod status. Needs root (network namespaces).

It never imports the operator.
"""
