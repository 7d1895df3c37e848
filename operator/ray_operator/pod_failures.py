"""Why a Ray pod stopped, in one line for a RayCluster's status and Events: each failed container's exit code, its
reason where it says more than "Error" (OOMKilled, say), and the last line of its termination message (for a Ray
container, the end of its log: the operator asks for FallbackToLogsOnError), else the pod's own reason (Evicted …).
A pure function of the pod."""

from __future__ import annotations

from typing import Any

MAX_LINE = 300  # characters of a log line quoted


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:MAX_LINE] if lines else ""


def why_stopped(pod: dict[str, Any]) -> str:
    """What ended the pod, e.g. "container ray-node exited with code 127: bash: ray: command not found"."""
    status = pod.get("status") or {}
    parts = []
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated") or {}
        if not terminated.get("exitCode"):
            continue
        part = f"container {container['name']} exited with code {terminated['exitCode']}"
        if terminated.get("reason") not in (None, "", "Error"):
            part += f" ({terminated['reason']})"
        line = _last_line(terminated.get("message"))
        parts.append(f"{part}: {line}" if line else part)
    if parts:
        return "; ".join(parts)
    said = ": ".join(str(status[key]) for key in ("reason", "message") if status.get(key))
    return said or "no container says why"
