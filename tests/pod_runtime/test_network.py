"""Which pod network the runtime picks, and the loopback network's addresses."""

from __future__ import annotations

import pytest

from pod_runtime import network
from pod_runtime.network import LoopbackNetwork, network_kind


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
