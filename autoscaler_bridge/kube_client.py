"""The Kubernetes API as the bridge uses it: the official client, with bounded retries.

Transient failures — connection errors, timeouts, 429 and 5xx answers — are
retried with exponential backoff (tenacity) for a bounded time, then raised;
every other API error (404, 409, 422 …) is raised at once for the caller to
decide. Credentials come from the environment: in-cluster service account
when running in a pod, else the kubeconfig (`KUBECONFIG`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, TypeVar

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException
from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

from autoscaler_bridge import crash_point

T = TypeVar("T")

USER_AGENT = "ray-operator"  # the operator's and its autoscalers' requests, as the API server's audit log names them
REQUEST_TIMEOUT = (5, 30)  # seconds to connect, to read
RETRY_FOR_SECONDS = 20.0


def is_transient(error: BaseException) -> bool:
    if isinstance(error, ApiException):
        return error.status in (0, 429) or error.status >= 500
    return isinstance(error, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, OSError))


def namespace_terminating(error: BaseException) -> bool:
    """A create refused because its namespace is being deleted (403 with the cause NamespaceTerminating): the
    cluster is on its way out with the namespace, which is no failure of it."""
    if not isinstance(error, ApiException) or error.status != 403:
        return False
    try:
        causes = (json.loads(error.body or "{}").get("details") or {}).get("causes") or []
    except ValueError:
        return False
    return any(cause.get("reason") == "NamespaceTerminating" for cause in causes)


def _configuration() -> kubernetes.client.Configuration:
    configuration = kubernetes.client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    else:
        # The client reads KUBECONFIG only when imported: pass it as it is now.
        kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration)
    return configuration


def api_client() -> kubernetes.client.ApiClient:
    """A client for the cluster this process runs in, else for the current kubeconfig context."""
    client = kubernetes.client.ApiClient(_configuration())
    client.user_agent = USER_AGENT
    return client


class KubeCalls:
    """Calls to the API with `REQUEST_TIMEOUT` and retries of transient failures (and, in the fault tests, the
    crash points of autoscaler_bridge.crash_point after writes)."""

    def __init__(self, client: kubernetes.client.ApiClient | None = None, retry_for: float = RETRY_FOR_SECONDS) -> None:
        self.client = client or api_client()
        self.core = kubernetes.client.CoreV1Api(self.client)
        self._retrying = retry(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential(multiplier=0.1, max=2.0),
            stop=stop_after_delay(retry_for),
            reraise=True,
        )

    def __call__(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
        result = self._retrying(method)(*args, **kwargs)
        crash_point.wrote(method.__name__)
        return result
