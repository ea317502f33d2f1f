"""Who holds a port: /proc/net/{udp,tcp}[6] give the socket inodes bound to it, /proc/<pid>/fd the processes.

Used when a service cannot listen ("udp/67 is held by pid 812 (dnsmasq)" tells the operator what to stop)
and after start-up, because a UDP port can be bound twice when both sockets set SO_REUSEADDR: a
dnsmasq or ISC dhcpd on the same host would then silently share port 67 with us, and each unicast
request would reach only one of the two servers.

/proc/net/* is per network namespace, so this sees the sockets of the namespace the daemon runs in;
/proc/<pid>/fd of processes we may not read (another user without root) are skipped: the holder is
then reported as unknown.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from appliance.config import Config

TCP_LISTEN = "0A"


@dataclass(frozen=True, slots=True)
class Holder:
    pid: int
    comm: str

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.comm})"


def bound_inodes(table: str, port: int, *, listening_only: bool) -> set[int]:
    """Socket inodes bound to local `port` in the text of /proc/net/{udp,tcp}[6] (header line included).

    TCP counts only listeners: an accepted connection also has the port as its local port but does
    not stop anyone from listening.
    """
    inodes: set[int] = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or ":" not in fields[1]:
            continue
        try:
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            inode = int(fields[9])
        except ValueError:
            continue
        if local_port != port or inode == 0:
            continue
        if listening_only and fields[3] != TCP_LISTEN:
            continue
        inodes.add(inode)
    return inodes


def holders(proto: str, port: int, proc: Path = Path("/proc")) -> list[Holder]:
    """The processes with a socket bound to `proto` ("udp" | "tcp") `port`, by pid (may be empty)."""
    inodes: set[int] = set()
    for table in (proto, proto + "6"):
        try:
            text = (proc / "net" / table).read_text()
        except OSError:
            continue
        inodes |= bound_inodes(text, port, listening_only=proto == "tcp")
    if not inodes:
        return []
    wanted = {f"socket:[{n}]" for n in inodes}
    found: list[Holder] = []
    for entry in _pids(proc):
        if _links(proc / str(entry)) & wanted:
            found.append(Holder(entry, _comm(proc / str(entry))))
    return sorted(found, key=lambda h: h.pid)


def describe_holders(proto: str, port: int, *, exclude_pid: int | None = None, proc: Path = Path("/proc")) -> str:
    """'udp/67 is held by pid 812 (dnsmasq)' or '... by a process this user cannot see'."""
    every = holders(proto, port, proc)
    found = [h for h in every if h.pid != exclude_pid]
    if found:
        return f"{proto}/{port} is held by " + ", ".join(map(str, found))
    if every:
        return f"{proto}/{port} is held by this imageserver itself (two services configured on one port?)"
    return f"{proto}/{port} is held by a process this user cannot see (check `ss -lnp sport = :{port}`)"


def service_ports(cfg: Config, service: str) -> list[tuple[str, int]]:
    """The ports an embedded service listens on, from the config (empty for services without a port)."""
    if service == "dhcp":
        ports = [("udp", cfg.dhcp.port)]
        if cfg.dhcp.mode == "proxy":
            ports.append(("udp", 4011))  # PXE boot server requests after a ProxyDHCP offer
        return ports
    if service == "tftp":
        return [("udp", cfg.tftp.port)]
    if service == "http":
        return [("tcp", cfg.http.port)]
    if service == "dns":
        return [("udp", cfg.dns.port), ("tcp", cfg.dns.port)]
    return []


def address_in_use(error: BaseException) -> bool:
    """Whether an exception (or what it was raised from or during) is EADDRINUSE."""
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno == errno.EADDRINUSE:
            return True
        seen = seen.__cause__ or seen.__context__
    return "address already in use" in str(error).lower()


def explain_in_use(cfg: Config, service: str, *, own_pid: int) -> str | None:
    """For a service that could not listen: who holds its ports (None if nobody else does)."""
    parts = [describe_holders(proto, port, exclude_pid=own_pid)
             for proto, port in service_ports(cfg, service) if _bound(proto, port)]
    return "; ".join(parts) or None


def sharers(cfg: Config, service: str, *, own_pid: int) -> list[tuple[str, int, list[Holder]]]:
    """Other processes bound where a service has just bound (SO_REUSEADDR lets UDP share a port).

    Only sockets that receive what ours receives count: the same or a wildcard address, and the same
    device or no device. A dnsmasq bound to libvirt's bridge does not share our provisioning interface,
    and a resolver on 127.0.0.53:53 does not share the appliance address. `ss` knows the bound device
    (/proc/net does not); without it every other socket on the port counts.
    """
    mine = own_binding(cfg, service)
    out = []
    for proto, port in service_ports(cfg, service):
        found = ss_listeners(proto, port)
        if found is None:
            if not _bound(proto, port, ignore=_own_sockets()):
                continue  # only our own sockets: no need to look through every process
            others = [h for h in holders(proto, port) if h.pid != own_pid]
        else:
            others = sorted({h for address, device, users in found if overlaps(mine, (address, device))
                             for h in users if h.pid != own_pid}, key=lambda h: h.pid)
        if others:
            out.append((proto, port, others))
    return out


def own_binding(cfg: Config, service: str) -> tuple[str, str | None]:
    """(address, device) a service binds, as the wiring sets them up."""
    if service in ("dhcp", "tftp"):
        return "0.0.0.0", cfg.appliance.interface
    if service == "dns":
        return (str(cfg.appliance.address) if cfg.appliance.address is not None else "0.0.0.0"), None
    if service == "http":
        return str(cfg.http.listen), None
    return "0.0.0.0", None


_WILDCARD = {"0.0.0.0", "*", "::", "[::]", "[::ffff:0.0.0.0]"}


def overlaps(a: tuple[str, str | None], b: tuple[str, str | None]) -> bool:
    """Do two bound sockets (address, device) receive the same datagrams?"""
    same_address = a[0] in _WILDCARD or b[0] in _WILDCARD or a[0].strip("[]") == b[0].strip("[]")
    same_device = a[1] is None or b[1] is None or a[1] == b[1]
    return same_address and same_device


_SS_LOCAL = re.compile(r"^(?P<address>\[[^\]]*\]|[^%\s]+?)(?:%(?P<device>[^:\s]+))?:(?P<port>\d+|\*)$")
_SS_USER = re.compile(r'\("(?P<comm>[^"]*)",pid=(?P<pid>\d+),fd=\d+\)')


def parse_ss(text: str) -> list[tuple[str, str | None, list[Holder]]]:
    """`ss -H -l -n -p` lines as (local address, bound device, holders)."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        m = _SS_LOCAL.match(fields[3])
        if m is None:
            continue
        users = [Holder(int(pid), comm) for comm, pid in _SS_USER.findall(line)]
        out.append((m["address"], m["device"], users))
    return out


def ss_listeners(proto: str, port: int) -> list[tuple[str, str | None, list[Holder]]] | None:
    """The sockets listening on `port` as `ss` sees them, or None when ss cannot be run."""
    try:
        result = subprocess.run(["ss", "-H", "-l", "-n", "-p", "-u" if proto == "udp" else "-t", f"sport = :{port}"],
                                capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_ss(result.stdout) if result.returncode == 0 else None


def _bound(proto: str, port: int, proc: Path = Path("/proc"), ignore: frozenset[int] = frozenset()) -> bool:
    for table in (proto, proto + "6"):
        try:
            text = (proc / "net" / table).read_text()
        except OSError:
            continue
        if bound_inodes(text, port, listening_only=proto == "tcp") - ignore:
            return True
    return False


def _own_sockets() -> frozenset[int]:
    return frozenset(int(link[8:-1]) for link in _links(Path("/proc/self")) if link.startswith("socket:["))


def _links(pid_dir: Path) -> set[str]:
    """What a process's fds point to; an fd closed while we look (or a process we may not read) is skipped."""
    fd_dir = pid_dir / "fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return set()
    out = set()
    for name in names:
        try:
            out.add(os.readlink(fd_dir / name))
        except OSError:
            continue
    return out


def _pids(proc: Path) -> Iterable[int]:
    try:
        names = os.listdir(proc)
    except OSError:
        return []
    return [int(n) for n in names if n.isdigit()]


def _comm(pid_dir: Path) -> str:
    try:
        return (pid_dir / "comm").read_text().strip() or "?"
    except OSError:
        return "?"
