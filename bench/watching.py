"""Where a benchmark watches the API: one watch read in a thread of its own, each event handed to a callback; and
its commonest use, when each cluster's first pod of a kind was seen."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import kubernetes
import urllib3


class EventWatch:
    """`on_event(event)` for each event of `list_call(*args, **kwargs)` watched, until stopped."""

    def __init__(
        self, on_event: Callable[[dict[str, Any]], None], list_call: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> None:
        self._watch = kubernetes.watch.Watch()
        self._thread = threading.Thread(
            target=self._run,
            args=(on_event, list_call, args, kwargs),
            daemon=True,
            name=f"watch of {list_call.__name__}",
        )
        self._thread.start()

    def _run(
        self,
        on_event: Callable[[dict[str, Any]], None],
        list_call: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        try:
            for event in self._watch.stream(list_call, *args, **kwargs):
                on_event(event)
        except urllib3.exceptions.HTTPError:
            pass  # the API server stopped under the watch: the measurement is over

    def stop(self) -> None:
        self._watch.stop()


class FirstPods(EventWatch):
    """When each cluster's first pod of `label_selector` was seen (by `clock`), from one watch of the namespace."""

    def __init__(
        self, client: kubernetes.client.ApiClient, namespace: str, label_selector: str, clock: Callable[[], float]
    ) -> None:
        self.seen: dict[str, float] = {}

        def record(event: dict[str, Any]) -> None:
            self.seen.setdefault(event["object"].metadata.labels["ray-cluster-name"], clock())

        super().__init__(
            record, kubernetes.client.CoreV1Api(client).list_namespaced_pod, namespace, label_selector=label_selector
        )
