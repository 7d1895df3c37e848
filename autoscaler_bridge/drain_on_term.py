"""What a Ray worker's container does when its pod is deleted: drain its Ray node, then wait for the running work.

Whoever deletes a worker pod (its autoscaler scaling down or replacing it, `kubectl delete pod`, `kubectl drain` of
its Kubernetes node, a preempted machine), the container's shell gets SIGTERM and runs this file (ray_pod embeds
its source: the Ray image has Ray, not this package) with the PID of the `ray start` it ran and the seconds it may
drain. It asks the GCS to drain this Ray node (DrainNode, reason preemption, with that deadline): the node takes no
new tasks or actors; once it is idle its raylet exits by itself (what Ray 2.60 does itself on SIGTERM, done here for
every Ray the operator supports, without depending on how the user's command passes signals on). A pod deleted as
its raylet starts first waits, within the deadline, for its node to join (stopped as it joins, it could take work
and lose it). Past the deadline it names what still ran (the `ray::` titles of the node's worker processes) and exits
EXIT_DEADLINE; the shell then stops Ray, within the pod's grace period. Once the GCS does not answer (the head is
gone: the whole cluster is being deleted or restarted) it exits EXIT_GCS_GONE and the shell kills Ray at once: a
raylet told to stop gracefully without its GCS waits for it until it is killed.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

EXIT_DRAINED = 0  # the node had no work left, or drained and its raylet exited
EXIT_NOT_DRAINED = 1  # the GCS refused the drain: Ray is stopped at once
EXIT_GCS_GONE = 2  # the GCS does not answer (the head is gone: the cluster is going): Ray is killed at once
EXIT_DEADLINE = 124  # work was still running at the deadline: the last line says what
POLL_SECONDS = 0.5
CONNECT_SECONDS = 3.0
RESOLVE_SECONDS = 5.0  # how long a lookup failing for now is retried
GCS_CHECK_POLLS = 4  # while waiting, whether the GCS still answers is asked every 4th poll
IDLE_TITLE = "ray::IDLE"
# The raylet's own agents, not work. Spelled in parts: `ray stop` kills any process whose command line holds these
# titles whole, and the container's shell has this source in its command line.
AGENT_TITLES = {f"ray::{agent}Agent" for agent in ("Dashboard", "RuntimeEnv")}
T = TypeVar("T")


def flag_value(args: Sequence[str], name: str) -> str | None:
    """The value of `--name=value` in a command line."""
    prefix = f"--{name}="
    return next((arg[len(prefix) :] for arg in args if arg.startswith(prefix)), None)


def running_work(titles: Sequence[str]) -> list[str]:
    """The tasks and actors a node's worker processes run, from their titles (`ray::f`, `ray::Actor.method`);
    idle workers and Ray's agents left out."""
    return sorted(
        {t for t in titles if t.startswith("ray::") and not t.startswith(IDLE_TITLE) and t not in AGENT_TITLES}
    )


def _stat(pid: int) -> tuple[str, int] | None:
    """A process's state and parent, from /proc (the Ray image may lack psutil); None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _descendants(root: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        stat = _stat(int(entry.name)) if entry.name.isdigit() else None
        if stat is not None:
            parents[int(entry.name)] = stat[1]
    found, frontier = [], {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier}
        found.extend(sorted(frontier))
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().rstrip("\0").split("\0")
    except OSError:
        return []


def _raylet(ray_start_pid: int) -> int | None:
    for pid in _descendants(ray_start_pid):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet":
                return pid
        except OSError:
            continue
    return None


def _unreachable(address: str) -> str | None:
    """Why nothing answers at a host:port, or None if something does. A name the resolver cannot look up for now
    (EAI_AGAIN: DNS busy, not a name that is gone) is asked again for up to RESOLVE_SECONDS."""
    host, _, port = address.rpartition(":")
    give_up = time.monotonic() + RESOLVE_SECONDS
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
            return None
        except socket.gaierror as error:
            if error.errno != socket.EAI_AGAIN or time.monotonic() >= give_up:
                return str(error)
        except (OSError, ValueError) as error:
            return str(error) or type(error).__name__
        time.sleep(POLL_SECONDS)


def _node_flags(raylet: int) -> tuple[str, str] | None:
    """A raylet's node id and GCS address; None while it is being exec'd (its command line is empty until then)."""
    args = _cmdline(raylet)
    node_id, gcs_address = flag_value(args, "node_id"), flag_value(args, "gcs-address")
    return (node_id, gcs_address) if node_id and gcs_address else None


def _poll(found: Callable[[], T | None], worth_it: Callable[[], bool], deadline: float) -> T | None:
    """What `found` gives once it gives something; None once it is no longer `worth_it` or the deadline passed."""
    while time.monotonic() < deadline and worth_it():
        value = found()
        if value is not None:
            return value
        time.sleep(POLL_SECONDS)
    return None


def _joined(gcs: Any, node_id: str, timeout: float) -> bool | None:
    """True once the GCS counts a node alive, None before (a raylet starting has not registered yet). Every alive
    node is listed: this runs with the image's Ray, and the client of Ray 2.52 cannot select one node (2.60's can)."""
    from ray.core.generated import gcs_pb2

    alive = gcs.get_all_node_info(timeout=timeout, state_filter=gcs_pb2.GcsNodeInfo.ALIVE)  # type: ignore[attr-defined]
    return any(node.hex() == node_id for node in alive) or None


def drain_node(gcs: Any, node_id: str, reason: str, message: str, deadline_ms: int, timeout: float) -> Any:
    """The GCS's DrainNode for one node (reason: a DrainNodeReason name): (accepted, why not), within `timeout`
    where Ray's client takes one (2.60's does, 2.52's does not: there the caller has seen the GCS answer)."""
    from ray.core.generated import autoscaler_pb2

    args = (node_id, autoscaler_pb2.DrainNodeReason.Value(reason), message, deadline_ms)  # type: ignore[attr-defined]
    try:
        return gcs.drain_node(*args, timeout=timeout)
    except TypeError:  # "an unexpected keyword argument": a Ray whose client has no timeout here
        return gcs.drain_node(*args)


def drain(ray_start_pid: int, seconds: float) -> int:
    """Drain this node for at most `seconds`; an exit code above."""
    deadline = time.monotonic() + seconds
    raylet = _raylet(ray_start_pid)
    if raylet is None:
        return EXIT_DRAINED  # no raylet (Ray stopped, or drained idle and exited): no work to wait for
    # A raylet just started shows its command line once exec'd; it is awaited, not stopped as it may join.
    flags = _poll(partial(_node_flags, raylet), partial(_alive, raylet), deadline)
    if flags is None:
        return EXIT_DRAINED  # it ended first: no work to wait for
    node_id, gcs_address = flags
    # Ray's client waits ~40 s for a GCS that is gone (a head deleted beside its workers): ask the port first.
    problem = _unreachable(gcs_address)
    if problem:
        print(f"cannot drain: the GCS at {gcs_address} does not answer: {problem}", flush=True)
        return EXIT_GCS_GONE
    from ray._raylet import GcsClient  # type: ignore[attr-defined]  # a Cython module without stubs

    gcs = GcsClient(address=gcs_address)
    rpc_seconds = max(1.0, min(10.0, seconds / 4))
    try:
        # The GCS accepts the drain of a node it does not know yet, and does nothing: wait for this one to join.
        joined = _poll(lambda: _joined(gcs, node_id, rpc_seconds), partial(_alive, raylet), deadline)
        if joined is None:
            return EXIT_DRAINED  # the raylet ended, or never joined: it ran no work
        accepted, why = drain_node(
            gcs,
            node_id,
            "DRAIN_NODE_REASON_PREEMPTION",
            "its pod is being deleted",
            int((time.time() + deadline - time.monotonic()) * 1000),
            rpc_seconds,
        )
    except Exception as error:  # noqa: BLE001 - the GCS is gone or did not answer in time: nothing to wait for
        print(f"cannot drain: the GCS at {gcs_address} did not answer: {error}", flush=True)
        return EXIT_GCS_GONE
    if not accepted:
        print(f"cannot drain: the GCS refused: {why}", flush=True)
        return EXIT_NOT_DRAINED
    print(f"draining Ray node {node_id} for at most {seconds:g}s: it takes no new work", flush=True)
    polls = 0
    while time.monotonic() < deadline:
        if not _alive(raylet):
            print("drained: the node's work is done", flush=True)
            return EXIT_DRAINED
        polls += 1
        if polls % GCS_CHECK_POLLS == 0 and _unreachable(gcs_address):  # the cluster itself is going: so is its work
            print("the GCS is gone: stopping without waiting longer", flush=True)
            return EXIT_GCS_GONE
        time.sleep(POLL_SECONDS)
    work = running_work([" ".join(_cmdline(pid)).strip() for pid in _descendants(raylet)]) if _alive(raylet) else []
    if not work:
        return EXIT_DRAINED
    print(f"drain deadline of {seconds:g}s passed; still running: {', '.join(work)}", flush=True)
    return EXIT_DEADLINE


if __name__ == "__main__":
    sys.exit(drain(int(sys.argv[1]), float(sys.argv[2])))
