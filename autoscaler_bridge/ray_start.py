"""Reading and completing the `ray start` command among a podType's start commands.

The operator owns a few of `ray start`'s flags (the node's resources must match
what the autoscaler plans with); the rest of each command is the user's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from autoscaler_bridge.names import GCS_PORT

RAY_START = re.compile(r"\bray\s+start\b")
# Flags derived from the podType's resources: a user-given value would make the
# Ray node disagree with the autoscaler's view of it.
MANAGED_FLAGS = ("--num-cpus", "--num-gpus", "--memory", "--resources")


def _flag_pattern(flag: str) -> re.Pattern[str]:
    return re.compile(r"(?:^|\s)" + re.escape(flag) + r"(?:=|\s+|$)(\S*)")


def ray_start_index(commands: Sequence[str]) -> int | None:
    """Index of the last command that runs `ray start`, or None."""
    found = [i for i, command in enumerate(commands) if RAY_START.search(command)]
    return found[-1] if found else None


def flag_value(command: str, flag: str) -> str | None:
    """The value of `--flag=value` / `--flag value` in a command, '' for a bare flag."""
    match = _flag_pattern(flag).search(command)
    return match.group(1) if match else None


def has_flag(command: str, flag: str) -> bool:
    return flag_value(command, flag) is not None


def managed_flags_in(command: str) -> list[str]:
    return [flag for flag in MANAGED_FLAGS if has_flag(command, flag)]


def gcs_port(head_commands: Sequence[str]) -> int:
    """The head's GCS port: `--port` of its `ray start` (Ray's default 6379)."""
    index = ray_start_index(head_commands)
    value = flag_value(head_commands[index], "--port") if index is not None else None
    return int(value) if value and value.isdigit() else GCS_PORT
