"""Where the tests' infrastructure starts and stops its processes: output appended to a log file, SIGTERM to the
child when the process that started it dies (nothing outlives a killed test run), a bounded stop."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
from pathlib import Path


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with open(log, "ab") as output:
        return subprocess.Popen(
            argv,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            preexec_fn=_die_with_parent,
        )


def stop(process: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 60) -> None:
    """`sig`, then SIGKILL after `timeout` seconds."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
