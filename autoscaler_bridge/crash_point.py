"""Where the operator dies on purpose: the crash points of the fault tests (issue 25), after Sieve's.

With RAY_OPERATOR_CRASH_LEDGER naming a file, every API write that the operator's process tree makes (the operator
and its autoscalers: creates, patches, replaces and deletes, but not the Leases its membership renews on a clock)
is recorded there once the API server has taken it, one line `<pid> <method>` per write. When the file beside it,
`<ledger>.crash-at`, holds a number n, the write that makes the ledger's n-th line SIGKILLs the operator at once
(its autoscalers die with it, as they do with the operator's pod). A test lets an operator settle, then sets n to
the ledger's length plus k to crash it right after the k-th write of the path it starts. Nothing is set in
production, where a write costs one look at the environment.
"""

from __future__ import annotations

import fcntl
import os
import signal
from pathlib import Path

LEDGER_ENV = "RAY_OPERATOR_CRASH_LEDGER"
ROOT_ENV = "RAY_OPERATOR_CRASH_ROOT"  # the operator's PID, which its autoscalers inherit
CRASH_AT_SUFFIX = ".crash-at"
WRITE_PREFIXES = ("create_", "patch_", "replace_", "delete_")


def is_counted(method_name: str) -> bool:
    """Whether a client method is a write of a path: any write but a Lease's (membership renews on a clock)."""
    return method_name.startswith(WRITE_PREFIXES) and "lease" not in method_name


def arm() -> None:
    """In the operator, before it starts any process: make it the process that a crash point kills."""
    if os.environ.get(LEDGER_ENV):
        os.environ[ROOT_ENV] = str(os.getpid())


def crash_at(ledger: Path, line: int) -> None:
    """Kill the operator that keeps `ledger` right after the write of its `line`-th line."""
    Path(f"{ledger}{CRASH_AT_SUFFIX}").write_text(str(line))


def _is_self_or_ancestor(pid: int) -> bool:
    """Whether `pid` is this process or one of its parents: a PID outlives its process (32768 of them on our
    machines), so a write of a dead operator's last autoscaler must not kill the process that now has its PID."""
    current = os.getpid()
    while current > 1:
        if current == pid:
            return True
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
        except OSError:
            return False
        current = int(stat.rsplit(")", 1)[1].split()[1])  # "pid (comm) state ppid …"
    return False


def wrote(method_name: str) -> None:
    """Record a write the API server took; kill the operator if it was the crash point's."""
    ledger = os.environ.get(LEDGER_ENV)
    if not ledger or not is_counted(method_name):
        return
    with open(ledger, "a+") as file:
        fcntl.flock(file, fcntl.LOCK_EX)  # the operator and its autoscalers write to one ledger
        file.seek(0)
        count = sum(1 for _ in file) + 1
        file.write(f"{os.getpid()} {method_name}\n")
        file.flush()
        try:
            target = int(Path(f"{ledger}{CRASH_AT_SUFFIX}").read_text())
        except (OSError, ValueError):
            return
        if count == target:
            root = int(os.environ.get(ROOT_ENV) or os.getpid())
            if _is_self_or_ancestor(root):
                os.kill(root, signal.SIGKILL)
            os._exit(137)  # an autoscaler: its operator is gone, and so is it
