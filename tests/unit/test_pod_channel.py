"""An autoscaler's requests for its cluster's pods, answered by its operator over a Unix socket
(autoscaler_bridge.pod_channel), with the operator's side played by pods in memory."""

import socket
import stat
import threading
import time
from multiprocessing.connection import Connection

import pytest

from autoscaler_bridge import fence
from autoscaler_bridge.pod_channel import PodChannel, PodRequestFailed, PodService, served
from autoscaler_bridge.watch_cache import NotSynced
from tests.harness.waiting import wait_for


def pod(name, cluster="demo", phase="Running"):
    return {
        "metadata": {"name": name, "namespace": "ray", "labels": {"ray-cluster-name": cluster}},
        "spec": {"containers": [{"name": "ray", "args": ["ray start --block"]}]},
        "status": {"phase": phase, "podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]},
    }


class Pods:
    """One cluster's pods in memory, as CachedPods answers for them; `fail` makes each call raise it, and while
    `release` is clear each write waits (a create retrying)."""

    def __init__(self, cluster, held):
        self.cluster, self.held = cluster, held
        self.fail = None
        self.release = threading.Event()
        self.release.set()
        self.known = threading.Event()  # clear: the cache has not listed yet
        self.known.set()
        self.calls = []

    def _call(self, *call, write=True):
        self.calls.append(call)
        if self.fail:
            raise self.fail
        if write:
            self.release.wait(30)

    def items(self, wait=30.0):
        self._call("items", wait, write=False)
        if not self.known.wait(wait):
            raise NotSynced("the Ray pods watch has not listed yet")
        return list(self.held.values())

    def create(self, body):
        self._call("create", body["metadata"]["name"])
        self.held[body["metadata"]["name"]] = body
        return body

    def label(self, name, labels):
        self._call("label", name, labels)
        if name not in self.held:
            return None
        self.held[name]["metadata"]["labels"].update(labels)
        return self.held[name]

    def delete(self, names, grace=None):
        self._call("delete", names, grace)
        return [name for name in names if self.held.pop(name, None) is None]


@pytest.fixture
def service(tmp_path):
    """Two clusters' pods, served at a socket; yields (the socket's path, the pods by cluster)."""
    clusters = {"demo": Pods("demo", {"a": pod("a")}), "other": Pods("other", {"x": pod("x", "other")})}
    path = tmp_path / "pods.sock"
    service = PodService(path, lambda namespace, cluster: clusters[cluster]).start()
    yield path, clusters
    service.stop()


def test_each_operation_is_answered_with_only_what_a_node_provider_reads(service):
    path, clusters = service
    channel = PodChannel(str(path), "ray", "demo")
    assert channel.items() == [
        {
            "metadata": {"name": "a", "namespace": "ray", "labels": {"ray-cluster-name": "demo"}},
            "status": {"phase": "Running", "podIP": "10.0.0.1"},
        }
    ]
    made = channel.create(pod("b", phase="Pending"))
    assert made["metadata"]["name"] == "b" and made["status"] == {"phase": "Pending", "podIP": "10.0.0.1"}
    assert channel.label("b", {"ray-node-joined": "true"})["metadata"]["labels"]["ray-node-joined"] == "true"
    assert channel.label("gone", {"k": "v"}) is None
    assert channel.delete(["a", "gone"], {"a": 15}) == ["gone"]
    assert sorted(p["metadata"]["name"] for p in channel.items()) == ["b"]
    assert clusters["demo"].calls[-2] == ("delete", ["a", "gone"], {"a": 15})
    assert [call[0] for call in clusters["other"].calls] == []  # each request is about its own cluster only


def test_pods_unknown_stay_unknown_and_failures_say_why(service):
    path, clusters = service
    channel = PodChannel(str(path), "ray", "demo")
    clusters["demo"].fail = NotSynced("the Ray pods watch has not listed yet")
    with pytest.raises(NotSynced, match="has not listed yet"):
        channel.items()  # never an empty list
    clusters["demo"].fail = RuntimeError("403 Forbidden")
    with pytest.raises(PodRequestFailed, match="RuntimeError: 403 Forbidden"):
        channel.create(pod("b"))
    clusters["demo"].fail = None
    assert [p["metadata"]["name"] for p in channel.items()] == ["a"]  # the same connection goes on


def test_a_listing_the_cache_cannot_answer_yet_waits_for_it_without_holding_up_other_requests(service):
    path, clusters = service
    clusters["demo"].known.clear()
    listed = []
    waiting = threading.Thread(target=lambda: listed.append(PodChannel(str(path), "ray", "demo").items()))
    waiting.start()
    wait_for(lambda: ("items", 30.0) in clusters["demo"].calls, message="the listing waiting for the cache")
    assert [p["metadata"]["name"] for p in PodChannel(str(path), "ray", "other").items()] == ["x"]  # meanwhile
    clusters["demo"].known.set()  # the cache has listed
    waiting.join(10)
    assert [[p["metadata"]["name"] for p in pods] for pods in listed] == [["a"]]


def test_requests_of_many_threads_and_autoscalers_each_get_their_own_answer(service):
    path, clusters = service
    for n in range(40):
        clusters["demo"].held[f"p{n}"] = pod(f"p{n}")
    answers, errors = {}, []

    def ask(n):
        try:
            if n % 2:  # writes, answered by the answering threads
                channel = PodChannel(str(path), "ray", "demo")
                for round_ in range(10):
                    labelled = channel.label(f"p{n}", {"round": str(round_)})
                    answers[n] = (labelled["metadata"]["name"], labelled["metadata"]["labels"]["round"])
            else:  # listings, answered at once
                channel = PodChannel(str(path), "ray", "other")
                for _ in range(10):
                    answers[n] = tuple(p["metadata"]["name"] for p in channel.items())
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert answers == {n: (f"p{n}", "9") if n % 2 else ("x",) for n in range(40)}


def test_an_autoscaler_that_goes_mid_request_leaves_the_service_serving(service):
    path, clusters = service
    clusters["demo"].release.clear()  # the next answer waits
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    going = Connection(sock.detach())
    going.send(("create", "ray", "demo", (pod("slow"),)))
    wait_for(lambda: ("create", "slow") in clusters["demo"].calls, message="the slow create under way")
    going.close()  # the autoscaler ended
    clusters["demo"].release.set()
    channel = PodChannel(str(path), "ray", "demo")
    wait_for(
        lambda: sorted(p["metadata"]["name"] for p in channel.items()) == ["a", "slow"],
        message="the slow create done, and the service answering another autoscaler",
    )
    with pytest.raises(PodRequestFailed, match="no operation 'items_and_more'"):
        channel._ask("items_and_more")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    with Connection(sock.detach()) as confused:
        confused.send("no request at all")
        assert confused.recv()[0] == "failed"
    assert "a" in [p["metadata"]["name"] for p in channel.items()]


def test_only_the_operators_user_may_connect(service):
    path, _ = service
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def test_an_autoscaler_waiting_for_an_operator_that_never_answers_stops_at_the_lease_deadline(service, tmp_path):
    """A paused operator answers nothing: its autoscaler must stop by itself before another operator may take its
    cluster over, so a request that waits past the operator's Lease deadline raises Fenced."""
    path, clusters = service
    deadline = tmp_path / "lease-valid-until"
    fence.write_deadline(deadline, time.monotonic() + 60)
    channel = PodChannel(str(path), "ray", "demo", fence_file=str(deadline))
    clusters["demo"].release.clear()  # the operator answers nothing
    raised = []

    def ask():
        try:
            channel.create(pod("b"))
        except fence.Fenced as error:
            raised.append(error)

    asking = threading.Thread(target=ask)
    asking.start()
    wait_for(lambda: ("create", "b") in clusters["demo"].calls, message="the request under way")
    fence.write_deadline(deadline, time.monotonic() - 1)  # the Lease lapsed, unrenewed
    asking.join(10)
    assert not asking.is_alive() and len(raised) == 1
    clusters["demo"].release.set()
    fence.write_deadline(deadline, time.monotonic() + 60)  # renewed: the channel asks again on a new connection
    wait_for(lambda: sorted(p["metadata"]["name"] for p in channel.items()) == ["a", "b"], message="b made at last")


def test_a_socket_left_by_an_operator_that_is_gone_is_taken_over(tmp_path):
    """A restarted operator's container keeps its work dir (an emptyDir): the socket file of the one before is there,
    answering nobody."""
    path = tmp_path / "pods.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as gone:
        gone.bind(str(path))
    assert path.exists() and not served(path)
    taking_over = PodService(path, lambda namespace, cluster: Pods(cluster, {"a": pod("a")})).start()
    try:
        assert served(path)
        assert [p["metadata"]["name"] for p in PodChannel(str(path), "ray", "demo").items()] == ["a"]
    finally:
        taking_over.stop()
    assert not path.exists()
