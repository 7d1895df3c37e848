"""Pod networking: each pod's own IP, hosts file and resolv.conf, and the command line that puts a container in them.

Two kinds, the same interface:
- `NamespaceNetwork` (root): a bridge on the host, and per pod a network namespace
  with a veth pair on it (`ip netns`, iproute2).
- `LoopbackNetwork` (any user): per pod an address of its own in 127.0.0.0/8 on the
  host's network stack, and a user namespace for the pod's mounts. A preloaded shim
  (loopback_shim.c, compiled on setup) moves the pod's wildcard and 127.0.0.1 binds
  onto its addresses, so pods can listen on the same ports as in Kubernetes.

Either way each container runs as PID 1 of its own PID, mount and UTS namespaces,
with a private /tmp and /dev/shm and the pod's name as hostname; host directories under /tmp that the pods'
commands need (the interpreter's installation) are bound back into the private /tmp.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import threading
from pathlib import Path

NETNS_ETC = Path("/etc/netns")
NETNS_RUN = Path("/var/run/netns")
SHIM_SOURCE = Path(__file__).with_name("loopback_shim.c")
# No cluster DNS: names are in the hosts file; a miss must fail at once, not wait on the host's resolver. Resolvers
# that read resolv.conf themselves (gRPC's) find none there; the C library's looks in the hosts file alone, so a
# name that is not there is unknown (as cluster DNS answers NXDOMAIN for a Service that is gone), not "temporary
# failure in name resolution" (a resolver that does not answer, which callers retry).
RESOLV_CONF = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
HOST_NSSWITCH = Path("/etc/nsswitch.conf")
# The pod's volumes (pairs of host directory and mount path, read-only), private /tmp and /dev/shm and hostname,
# then the container's command. Arguments: hostname, the number of volumes, their pairs, the command.
_POD_INIT = (
    'hostname "$1"; n=$2; shift 2; while [ "$n" -gt 0 ]; do mkdir -p "$2" && mount --bind "$1" "$2" '
    '&& mount -o remount,bind,ro "$2" || { echo "pod-init: cannot mount $1 at $2" >&2; exit 1; }; '
    "shift 2; n=$((n - 1)); done; "
    # Host directories under /tmp that the private /tmp would hide: held open, then bound back into it.
    'k=$1; shift; fds=(); dirs=(); while [ "$k" -gt 0 ]; do exec {fd}<"$1" || exit 1; fds+=("$fd"); dirs+=("$1"); '
    'shift; k=$((k - 1)); done; mount -t tmpfs -o mode=1777 tmpfs /tmp; for i in "${!dirs[@]}"; do '
    'mkdir -p "${dirs[$i]}" && mount --no-canonicalize --bind "/proc/self/fd/${fds[$i]}" "${dirs[$i]}" '
    '|| { echo "pod-init: cannot keep ${dirs[$i]}" >&2; exit 1; }; eval "exec ${fds[$i]}<&-"; done; '
    'mount -t tmpfs tmpfs /dev/shm; exec "$@"'
)
_UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "--uts"]


def _init_args(hostname: str, volumes: list[tuple[str, str]], keep: list[str]) -> list[str]:
    return [hostname, str(len(volumes)), *(part for volume in volumes for part in volume), str(len(keep)), *keep]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def hosts_from_files(nsswitch: str) -> str:
    """An nsswitch.conf with host names looked up in the hosts file alone, the rest as in `nsswitch`."""
    lines = [line for line in nsswitch.splitlines() if not line.lstrip().startswith("hosts:")]
    return "\n".join([*lines, "hosts: files"]) + "\n"


class PodNetwork:
    """What both kinds share: addresses from `subnet` (the first is the host's), and per pod a
    directory `files/<prefix>-<key>` with its hosts file and resolv.conf. Every name starts with `prefix`."""

    DEFAULT_SUBNET = ""

    def __init__(self, prefix: str, subnet: str | None, files: Path) -> None:
        self.prefix = prefix
        self.subnet = ipaddress.ip_network(subnet or self.DEFAULT_SUBNET)
        self.files = files
        self.gateway = str(self.subnet.network_address + 1)
        self._lock = threading.Lock()
        self._used: dict[str, str] = {}  # ip -> pod name, until the pod's files are gone
        self._live: set[str] = set()  # pods whose hosts file may be written
        self.keep: list[str] = []  # host directories under /tmp that pods still see (containers.dirs_to_keep)

    @classmethod
    def remove_leftovers(cls, prefix: str) -> None:
        """Delete what a runtime with this prefix left behind (e.g. after it was SIGKILLed)."""
        directory = cls.files_dir()
        if directory.exists():
            for path in directory.iterdir():
                if path.name.startswith(f"{prefix}-"):
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)

    @staticmethod
    def files_dir() -> Path:
        raise NotImplementedError

    def setup(self) -> None:
        self.remove_leftovers(self.prefix)

    def add_pod(self, key: str, wanted: str | None = None) -> tuple[str, str]:
        """A pod's network; returns (its name, the pod IP): `wanted` (the IP it had) if that is free."""
        name = f"{self.prefix}-{key}"
        with self._lock:
            if (
                wanted
                and ipaddress.ip_address(wanted) in self.subnet
                and wanted != self.gateway
                and wanted not in self._used
            ):
                address = wanted
            else:
                address = next(
                    str(a) for a in self.subnet.hosts() if str(a) != self.gateway and str(a) not in self._used
                )
            self._used[address] = name
        try:
            self._create(name, address)
        except BaseException:
            self.remove_pod(name, address)  # nothing half-made stays behind
            raise
        (self.files / name).mkdir(parents=True, exist_ok=True)
        (self.files / name / "resolv.conf").write_text(RESOLV_CONF)
        if HOST_NSSWITCH.exists():  # else there is nothing to mount it over: the C library's defaults apply
            (self.files / name / "nsswitch.conf").write_text(hosts_from_files(HOST_NSSWITCH.read_text()))
        with self._lock:
            self._live.add(name)
        return name, address

    def _create(self, name: str, address: str) -> None:
        """Whatever the kind needs beyond the pod's files."""

    def remove_pod(self, name: str, address: str) -> None:
        with self._lock:
            self._live.discard(name)  # no hosts file written from here on: it would outlive the removal
        shutil.rmtree(self.files / name, ignore_errors=True)
        with self._lock:
            self._used.pop(address, None)

    def write_hosts(self, name: str, entries: list[tuple[str, list[str]]]) -> None:
        """The pod's /etc/hosts, rewritten in place (the pod sees this very file through a bind mount) and only when
        it changes: a lookup reading it mid-rewrite could miss a name. The new text is written over the old, then the
        rest cut off, so a reader never finds it empty."""
        lines = ["127.0.0.1 localhost", "::1 localhost"] + [f"{ip} {' '.join(names)}" for ip, names in entries]
        text = "\n".join(lines) + "\n"
        with self._lock:
            if name not in self._live:
                return
            path = self.files / name / "hosts"
            with open(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "r+") as hosts:
                if hosts.read() == text:
                    return
                hosts.seek(0)
                hosts.write(text)
                hosts.truncate()

    def command(self, name: str, hostname: str, argv: list[str], volumes: list[tuple[str, str]] = ()) -> list[str]:
        """The command line that runs `argv` as a container of pod `name`, with `volumes` (host directory,
        mount path) mounted read-only."""
        raise NotImplementedError

    def environment(self, address: str) -> dict[str, str]:
        """What the kind adds to a container's environment."""
        return {}

    def teardown(self) -> None:
        with self._lock:
            pods = list(self._used.items())
        for address, name in pods:
            self.remove_pod(name, address)


class NamespaceNetwork(PodNetwork):
    """Root: a bridge on the host takes the subnet's first address; each pod a network namespace and veth pair."""

    DEFAULT_SUBNET = "10.244.0.0/16"

    def __init__(self, prefix: str, subnet: str | None = None) -> None:
        if os.geteuid() != 0:
            raise PermissionError("network namespaces for pods need root (without root, use the loopback network)")
        if shutil.which("ip") is None:
            raise RuntimeError("the pod runtime needs iproute2 (apt-get install iproute2)")
        super().__init__(prefix, subnet, NETNS_ETC)
        self.bridge = f"{prefix}br"

    @staticmethod
    def files_dir() -> Path:
        return NETNS_ETC  # `ip netns exec NAME` bind-mounts /etc/netns/NAME/* over /etc/*

    @classmethod
    def remove_leftovers(cls, prefix: str) -> None:
        if NETNS_RUN.exists():
            for path in NETNS_RUN.iterdir():
                if path.name.startswith(f"{prefix}-"):
                    _ip("netns", "del", path.name, check=False)
        super().remove_leftovers(prefix)
        _ip("link", "del", f"{prefix}br", check=False)

    def setup(self) -> None:
        super().setup()
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def host_veth(self, name: str) -> str:
        """The host end of pod `name`'s veth pair: named after the pod, not after a count, since runtimes of one
        prefix follow each other (a test run's suites, sandbox after sandbox) and the kernel removes a deleted
        namespace's veth a little later, not at once."""
        return f"{self.prefix[:6]}v{name.removeprefix(self.prefix + '-').replace('-', '')}"[:15]

    def _create(self, name: str, address: str) -> None:
        veth = self.host_veth(name)
        _ip("netns", "add", name)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
        _ip("link", "set", veth, "master", self.bridge, "up")
        _ip("-n", name, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        _ip("-n", name, "link", "set", "eth0", "up")
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "route", "add", "default", "via", self.gateway)

    def remove_pod(self, name: str, address: str) -> None:
        _ip("netns", "del", name, check=False)  # takes the veth pair with it
        super().remove_pod(name, address)

    def command(self, name: str, hostname: str, argv: list[str], volumes: list[tuple[str, str]] = ()) -> list[str]:
        return [
            "ip",
            "netns",
            "exec",
            name,
            *_UNSHARE,
            "--",
            "/bin/bash",
            "-c",
            _POD_INIT,
            "pod-init",
            *_init_args(hostname, volumes, self.keep),
            *argv,
        ]

    def teardown(self) -> None:
        super().teardown()
        _ip("link", "del", self.bridge, check=False)


class LoopbackNetwork(PodNetwork):
    """Any user: pod IPs from a subnet of 127.0.0.0/8 (the host is its first address), and for each pod a
    private localhost at the same offset in the next subnet of that size. Needs unprivileged user namespaces
    and a C compiler (for the shim)."""

    DEFAULT_SUBNET = "127.244.0.0/16"

    def __init__(self, prefix: str, subnet: str | None = None) -> None:
        super().__init__(prefix, subnet, self.files_dir())
        loopback = ipaddress.ip_network("127.0.0.0/8")
        localhosts = ipaddress.ip_network(
            f"{self.localhost_of(str(self.subnet.network_address))}/{self.subnet.prefixlen}"
        )
        if (
            not (self.subnet.subnet_of(loopback) and localhosts.subnet_of(loopback))
            or self.subnet.network_address.packed[1] == 0
        ):
            raise ValueError(
                f"a loopback pod network and the subnet above it lie in 127.0.0.0/8, away from 127.0.0.1: not "
                f"{self.subnet}"
            )
        self.shim = self.files / f"{prefix}-loopback-shim.so"

    @staticmethod
    def files_dir() -> Path:
        """Not under /tmp: each pod mounts a /tmp of its own, and must still see the shim."""
        return Path(os.environ.get("XDG_RUNTIME_DIR") or Path.home() / ".cache") / "pod-runtime"

    def setup(self) -> None:
        super().setup()
        self.files.mkdir(mode=0o700, parents=True, exist_ok=True)
        probe = subprocess.run(
            ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True, text=True, timeout=30
        )
        if probe.returncode != 0:
            raise RuntimeError(
                "the loopback pod network needs unprivileged user namespaces "
                f"(sysctl kernel.unprivileged_userns_clone=1, or run as root): {probe.stderr.strip()}"
            )
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            raise RuntimeError(
                "the loopback pod network compiles a small C shim: install a C compiler (apt-get install gcc)"
            )
        subprocess.run(
            [compiler, "-shared", "-fPIC", "-O2", "-o", str(self.shim), str(SHIM_SOURCE), "-ldl"],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def localhost_of(self, address: str) -> str:
        """The pod's private localhost: the pod IP moved one subnet up."""
        return str(ipaddress.ip_address(address) + self.subnet.num_addresses)

    def command(self, name: str, hostname: str, argv: list[str], volumes: list[tuple[str, str]] = ()) -> list[str]:
        files = self.files / name
        binds = (
            f'mount --bind "{files}/hosts" /etc/hosts && mount --bind "{files}/resolv.conf" /etc/resolv.conf '
            f'&& {{ [ ! -e "{files}/nsswitch.conf" ] || mount --bind "{files}/nsswitch.conf" /etc/nsswitch.conf; }} '
            '|| { echo "pod-init: cannot mount the pod\'s hosts file, resolv.conf and nsswitch.conf" >&2; exit 1; }; '
        )
        return [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            *_UNSHARE[1:],
            "--",
            "/bin/bash",
            "-c",
            binds + _POD_INIT,
            "pod-init",
            *_init_args(hostname, volumes, self.keep),
            *argv,
        ]

    def environment(self, address: str) -> dict[str, str]:
        return {
            "HOME": "/tmp",
            "LD_PRELOAD": str(self.shim),
            "POD_RUNTIME_IP": address,
            "POD_RUNTIME_LOCALHOST": self.localhost_of(address),
        }

    def teardown(self) -> None:
        super().teardown()
        self.shim.unlink(missing_ok=True)


NETWORKS: dict[str, type[PodNetwork]] = {"netns": NamespaceNetwork, "loopback": LoopbackNetwork}


def network_kind(requested: str) -> str:
    """`auto`: network namespaces when root and iproute2 is there, else loopback addresses."""
    if requested == "auto":
        return "netns" if os.geteuid() == 0 and shutil.which("ip") else "loopback"
    return requested
