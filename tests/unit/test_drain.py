"""The pure parts of draining: what a worker's container reads off its raylet and its workers, and how a rejected
idle drain is taken back in the autoscaler's event summary."""

import shutil
import subprocess
import time
from types import SimpleNamespace

import pytest
from ray.autoscaler._private.autoscaler import StandardAutoscaler
from ray.autoscaler._private.event_summarizer import EventSummarizer

from autoscaler_bridge import drain_on_term
from autoscaler_bridge.drain_on_term import flag_value, running_work
from autoscaler_bridge.draining_autoscaler import rejected_template, removal_template, take_back_removal
from tests.harness.waiting import wait_for


def test_the_raylets_node_id_and_gcs_address_come_from_its_command_line():
    args = ["/x/raylet", "--node_id=abc123", "--gcs-address=10.0.0.1:6379", "--node_id_other=no"]
    assert flag_value(args, "node_id") == "abc123"
    assert flag_value(args, "gcs-address") == "10.0.0.1:6379"
    assert flag_value(args, "node-id") is None


def test_running_work_is_named_by_the_workers_titles_and_idle_ones_are_left_out():
    titles = [
        "ray::IDLE",
        "ray::train",
        "ray::Counter.add",
        "ray::train",
        "/usr/bin/python3 x",
        "ray::IDLE_SPILL_WORKER",
        "ray::DashboardAgent",
        "ray::RuntimeEnvAgent",
    ]
    assert running_work(titles) == ["ray::Counter.add", "ray::train"]
    assert running_work(["ray::IDLE"]) == []


@pytest.mark.parametrize(
    "before, after",
    [
        ({removal_template("w", "idle"): 2}, {removal_template("w", "idle"): 1, rejected_template("w"): 1}),
        ({removal_template("w", "idle"): 1}, {rejected_template("w"): 1}),
        ({removal_template("w", "idle"): 1, rejected_template("w"): 2}, {rejected_template("w"): 3}),
        ({removal_template("w", "outdated"): 1}, {removal_template("w", "outdated"): 1, rejected_template("w"): 1}),
    ],
)
def test_a_rejected_idle_drain_is_a_removal_taken_back(before, after):
    take_back_removal(before, "w")
    assert before == after


def test_the_removal_template_is_the_key_rays_autoscaler_writes():
    """StandardAutoscaler.schedule_node_termination's own summary key, which take_back_removal must find."""
    summarizer = EventSummarizer()
    autoscaler = SimpleNamespace(
        provider=SimpleNamespace(internal_ip=lambda node: "10.0.0.1"),
        nodes_to_terminate=[],
        event_summarizer=summarizer,
        _get_node_type=lambda node: "rayWorkerType",
    )
    StandardAutoscaler.schedule_node_termination(autoscaler, "pod-1", "idle", lambda message: None)
    assert set(summarizer.events_by_key) == {removal_template("rayWorkerType", "idle")}
    take_back_removal(summarizer.events_by_key, "rayWorkerType")
    assert summarizer.summary() == ["Drain rejected: kept 1 idle nodes of type rayWorkerType that took work again."]


def test_the_raylet_is_found_among_the_descendants_of_ray_start(tmp_path):
    """drain_on_term reads /proc itself (a Ray image may lack psutil): a `raylet` two levels below `ray start` is
    found and its work named; without one there is nothing to drain."""
    raylet = tmp_path / "raylet"
    shutil.copy("/bin/bash", raylet)
    start = subprocess.Popen(
        ["/bin/bash", "-c", f"{raylet} -c 'sleep 60; true' --node_id=n1 --gcs-address=127.0.0.1:9 & wait"]
    )
    try:
        wait_for(lambda: drain_on_term._raylet(start.pid) is not None, timeout=10, message="the raylet started")
        found = drain_on_term._raylet(start.pid)
        assert drain_on_term._cmdline(found)[1:] == [
            "-c",
            "sleep 60; true",
            "--node_id=n1",
            "--gcs-address=127.0.0.1:9",
        ]
        assert drain_on_term._alive(found)
        # A GCS that does not answer (its head deleted beside the worker): Ray is stopped without waiting for it.
        started = time.monotonic()
        assert drain_on_term.drain(start.pid, 60) == drain_on_term.EXIT_GCS_GONE
        assert time.monotonic() - started < 30
    finally:
        start.kill()
        subprocess.run(["pkill", "-f", str(raylet)], check=False)
    # No raylet under `ray start` (stopped, or drained idle and exited): nothing to wait for.
    lonely = subprocess.Popen(["sleep", "60"])
    try:
        started = time.monotonic()
        assert drain_on_term.drain(lonely.pid, 60) == drain_on_term.EXIT_DRAINED
        assert time.monotonic() - started < 30
    finally:
        lonely.kill()
        lonely.wait()


class GcsOf252:
    """The GCS client's calls the drain makes, as Ray 2.52 has them: no timeout on drain_node, no node selector."""

    def __init__(self, alive: list[str]) -> None:
        self.alive, self.drained = alive, list[tuple[str, int]]()

    def get_all_node_info(self, timeout=None, state_filter=None):
        from ray._raylet import NodeID

        return {NodeID.from_hex(node): object() for node in self.alive}

    def drain_node(self, node_id, reason, reason_message, deadline_timestamp_ms):
        self.drained.append((node_id, reason))
        return True, ""


class GcsOf260(GcsOf252):
    """As Ray 2.60 has them: drain_node takes a timeout."""

    def drain_node(self, node_id, reason, reason_message, deadline_timestamp_ms, timeout=None):
        assert timeout == 3.0
        return super().drain_node(node_id, reason, reason_message, deadline_timestamp_ms)


@pytest.mark.parametrize("gcs_client", [GcsOf252, GcsOf260])
def test_the_drain_asks_the_gcs_as_every_supported_ray_lets_it(gcs_client):
    node, other = "ab" * 28, "cd" * 28
    gcs = gcs_client([other])
    assert drain_on_term._joined(gcs, node, 3.0) is None  # not yet registered
    gcs.alive.append(node)
    assert drain_on_term._joined(gcs, node, 3.0) is True
    assert drain_on_term.drain_node(gcs, node, "DRAIN_NODE_REASON_PREEMPTION", "going", 1, 3.0) == (True, "")
    assert gcs.drained == [(node, 2)]  # DrainNodeReason PREEMPTION
