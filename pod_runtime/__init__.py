"""A kubelet stand-in: runs the pods of a Kubernetes API server as local processes.

Each pod gets an IP of its own (a network namespace on a bridge as root, else a
loopback address: network.py), a PID, mount and UTS namespace (so `ray stop` in
one pod sees only that pod's processes, and `/tmp`, `/dev/shm` and the hostname
are its own), and a hosts file that resolves Service names to the Service's
ready endpoints. Any `rayproject/ray*` image runs on the local Ray installation;
other images are refused with a clear pod status.

It never imports the operator.
"""
