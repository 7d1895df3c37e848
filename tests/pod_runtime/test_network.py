"""Which pod network the runtime picks, and the loopback network's addresses."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from pod_runtime import network
from pod_runtime.network import NETNS_RUN, LoopbackNetwork, NamespaceNetwork, network_kind


@pytest.mark.parametrize("euid, has_ip, kind", [(0, True, "netns"), (0, False, "loopback"), (1000, True, "loopback")])
def test_auto_takes_namespaces_only_as_root_with_iproute2(monkeypatch, euid, has_ip, kind):
    monkeypatch.setattr(network.os, "geteuid", lambda: euid)
    monkeypatch.setattr(network.shutil, "which", lambda name: "/usr/sbin/ip" if has_ip else None)
    assert network_kind("auto") == kind
    assert network_kind("netns") == "netns" and network_kind("loopback") == "loopback"


def test_each_loopback_pod_has_a_private_localhost_one_subnet_up():
    net = LoopbackNetwork("t", "127.244.0.0/16")
    assert net.gateway == "127.244.0.1"
    assert net.localhost_of("127.244.3.7") == "127.245.3.7"


@pytest.mark.parametrize("subnet", ["10.0.0.0/16", "127.0.0.0/16", "127.255.0.0/16"])
def test_a_loopback_subnet_must_leave_127_0_0_1_and_room_above_it(subnet):
    with pytest.raises(ValueError, match="127.0.0.0/8"):
        LoopbackNetwork("t", subnet)


def test_a_removed_pod_gets_no_hosts_file_back(tmp_path, monkeypatch):
    """Hosts files are rewritten whenever any pod changes: one written while a pod is being removed must not
    bring its directory back (it did, and left pods' files behind)."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    net = LoopbackNetwork("t", "127.244.0.0/16")
    name, ip = net.add_pod("k")
    net.write_hosts(name, [(ip, ["p"])])
    assert f"{ip} p" in (net.files / name / "hosts").read_text()
    net.remove_pod(name, ip)
    net.write_hosts(name, [(ip, ["p"])])
    assert not (net.files / name).exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_a_pod_network_that_cannot_be_made_leaves_nothing_and_the_next_pod_gets_its_address():
    """Host veths are named after their pods: a runtime whose prefix a previous runtime had (a sandbox after a
    sandbox) met the veth the kernel had not yet removed with its namespace, and the pod never started."""
    net = NamespaceNetwork("tnet", "10.198.0.0/16")
    net.setup()
    try:
        first, second = uuid.uuid4().hex[:13], uuid.uuid4().hex[:13]
        assert net.host_veth(f"tnet-{first}") != net.host_veth(f"tnet-{second}")
        taken = net.host_veth(f"tnet-{first}")
        subprocess.run(["ip", "link", "add", taken, "type", "bridge"], check=True)  # any link of the name
        with pytest.raises(subprocess.CalledProcessError):
            net.add_pod(first)
        assert not (NETNS_RUN / f"tnet-{first}").exists() and not (net.files / f"tnet-{first}").exists()
        subprocess.run(["ip", "link", "del", taken], check=True)
        name, ip = net.add_pod(second)
        assert ip == "10.198.0.2"  # the failed pod's address was given back
        assert (
            subprocess.run(
                ["ip", "netns", "exec", name, "ip", "-br", "addr", "show", "eth0"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()[2]
            == "10.198.0.2/16"
        )
    finally:
        net.teardown()
        NamespaceNetwork.remove_leftovers("tnet")


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_a_name_missing_from_a_pods_hosts_file_is_unknown_at_once():
    """As cluster DNS answers NXDOMAIN for a Service that is gone: not "temporary failure in name resolution", which
    callers retry (a deleted cluster's workers waited 5 s for their head's name)."""
    net = NamespaceNetwork("tdns", "10.197.0.0/16")
    net.setup()
    try:
        name, ip = net.add_pod(uuid.uuid4().hex[:13])
        net.write_hosts(name, [(ip, ["present"])])
        lookup = (
            "import socket\n"
            "print(socket.getaddrinfo('present', 1)[0][4][0])\n"
            "try:\n"
            "    socket.getaddrinfo('gone-ray-head.ray.svc.cluster.local', 6379)\n"
            "except socket.gaierror as error:\n"
            "    print(error.errno == socket.EAI_NONAME)\n"
        )
        answer = subprocess.run(
            net.command(name, "pod", ["python3", "-c", lookup]), capture_output=True, text=True, timeout=60
        )
        assert answer.stdout.split() == [ip, "True"], answer.stderr
    finally:
        net.teardown()
        NamespaceNetwork.remove_leftovers("tdns")
