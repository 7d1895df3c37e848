"""A Kubernetes API server in Python, for tests and the local sandbox.

It holds itself to the real API's semantics wherever an operator, kubectl
or Helm depends on them (see each module and the fidelity tests); it
never imports the operator. Start one with `ApiServer(...).start()` or
`python -m kube_apiserver`.
"""
