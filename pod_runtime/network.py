"""Pod networking: a bridge on the host, a network namespace and veth pair per pod, per-pod hosts files."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import threading
from pathlib import Path

NETNS_ETC = Path("/etc/netns")
NETNS_RUN = Path("/var/run/netns")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


class Network:
    """Addresses from `subnet`: the bridge takes the first, pods the rest; all names start with `prefix`."""

    def __init__(self, prefix: str, subnet: str) -> None:
        if os.geteuid() != 0:
            raise PermissionError("the pod runtime needs root: it gives each pod a network namespace")
        if shutil.which("ip") is None:
            raise RuntimeError("the pod runtime needs iproute2 (apt-get install iproute2)")
        self.prefix = prefix
        self.subnet = ipaddress.ip_network(subnet)
        self.bridge = f"{prefix}br"
        self.gateway = str(self.subnet.network_address + 1)
        self._lock = threading.Lock()
        self._used: dict[str, str] = {}  # ip -> netns
        self._next_veth = 0

    def setup(self) -> None:
        self.remove_leftovers(self.prefix)
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    @staticmethod
    def remove_leftovers(prefix: str) -> None:
        """Delete what a runtime with this prefix left behind (e.g. after it was SIGKILLed)."""
        if NETNS_RUN.exists():
            for path in NETNS_RUN.iterdir():
                if path.name.startswith(f"{prefix}-"):
                    _ip("netns", "del", path.name, check=False)
        if NETNS_ETC.exists():
            for path in NETNS_ETC.iterdir():
                if path.name.startswith(f"{prefix}-"):
                    shutil.rmtree(path, ignore_errors=True)
        _ip("link", "del", f"{prefix}br", check=False)

    def add_pod(self, key: str) -> tuple[str, str]:
        """A network namespace for a pod; returns (namespace name, pod IP)."""
        netns = f"{self.prefix}-{key}"
        with self._lock:
            address = next(str(a) for a in self.subnet.hosts() if str(a) != self.gateway and str(a) not in self._used)
            self._used[address] = netns
            self._next_veth += 1
            veth = f"{self.prefix}v{self._next_veth:x}"[:15]
        _ip("netns", "add", netns)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("link", "set", veth, "master", self.bridge, "up")
        _ip("-n", netns, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "route", "add", "default", "via", self.gateway)
        (NETNS_ETC / netns).mkdir(parents=True, exist_ok=True)
        # No cluster DNS: names are in the hosts file; a miss must fail at once, not wait on the host's resolver.
        (NETNS_ETC / netns / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        return netns, address

    def remove_pod(self, netns: str, address: str) -> None:
        _ip("netns", "del", netns, check=False)  # takes the veth pair with it
        shutil.rmtree(NETNS_ETC / netns, ignore_errors=True)
        with self._lock:
            self._used.pop(address, None)

    @staticmethod
    def write_hosts(netns: str, entries: list[tuple[str, list[str]]]) -> None:
        """The pod's /etc/hosts, rewritten in place (`ip netns exec` bind-mounts this very file)."""
        lines = ["127.0.0.1 localhost", "::1 localhost"] + [f"{ip} {' '.join(names)}" for ip, names in entries]
        path = NETNS_ETC / netns / "hosts"
        with open(path, "a+") as hosts:
            hosts.seek(0)
            hosts.truncate()
            hosts.write("\n".join(lines) + "\n")

    def teardown(self) -> None:
        with self._lock:
            pods = list(self._used.items())
        for address, netns in pods:
            self.remove_pod(netns, address)
        _ip("link", "del", self.bridge, check=False)
