"""The tests' harness, in one place: the project's files (files), bounded waits (waiting), requests to an API
server (api), a whole Kubernetes-with-Ray on this machine (local_kube: the control plane or the project's API server,
the pod runtime as kubelet, the operator), the RayClusters the tests make (rayclusters) and the command-line tools
(tools: kubectl, helm). The benchmarks under bench/ use it too; tests/conftest.py holds only pytest's fixtures."""
