"""Log lines about a cluster start with `<cluster name>,<namespace>`, so `grep mycluster,ray` finds them all.

Records about a cluster carry it as `ray_cluster` (see `cluster_logger`); every
line of such a record, including each line of a multi-line message, starts with
the prefix.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DEFAULT_LEVEL = "INFO"


def cluster_prefix(name: str, namespace: str) -> str:
    return f"{name},{namespace}"


class ClusterPrefixFormatter(logging.Formatter):
    def __init__(self, fixed_prefix: str | None = None) -> None:
        super().__init__(FORMAT)
        self.fixed_prefix = fixed_prefix

    def _prefix(self, record: logging.LogRecord) -> str | None:
        if self.fixed_prefix:
            return self.fixed_prefix
        prefix = getattr(record, "ray_cluster", None)
        return prefix if isinstance(prefix, str) and prefix else None

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prefix = self._prefix(record)
        if prefix is None:
            return text
        return "\n".join(f"{prefix} {line}" for line in text.splitlines())


class _ClusterAdapter(logging.LoggerAdapter):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(kwargs.get("extra") or {}), "ray_cluster": (self.extra or {})["ray_cluster"]}
        return msg, kwargs


def cluster_logger(logger: logging.Logger, name: str, namespace: str) -> logging.LoggerAdapter:
    """A logger whose every line starts with `<name>,<namespace>`."""
    return _ClusterAdapter(logger, {"ray_cluster": cluster_prefix(name, namespace)})


def configure(level: str = DEFAULT_LEVEL, fixed_prefix: str | None = None) -> None:
    """Log to stderr with the cluster prefix; `fixed_prefix` prefixes every line (a monitor process)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ClusterPrefixFormatter(fixed_prefix))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    if logging.getLevelName(root.level) != level.upper():  # setting it writes to every logger (their caches)
        root.setLevel(level.upper())
