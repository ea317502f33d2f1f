"""Real DHCP clients (dhclient, busybox udhcpc, dhcpcd) run safely inside a lab namespace.

Safety (LAB.md): a client in a namespace shares the host's /etc, and the default hooks of dhclient
and dhcpcd rewrite /etc/resolv.conf and the hostname. So every client here runs with an
address-only hook from lab/hooks/ (dhcpcd with no hook at all), with its config, lease and pid
files in the lab's tmp dir, and every run checks the host's /etc/resolv.conf, hosts, hostname and
hostname are unchanged afterwards (HostEtcChanged otherwise).

The hooks record what the server sent into a file; `Lease` is parsed from it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lab.hostguard import HostSnapshot
from lab.netns import LabError, Namespace, Proc

HOOKS = Path(__file__).with_name("hooks")
DHCLIENT_HOOK = HOOKS / "dhclient-address-only.sh"
UDHCPC_HOOK = HOOKS / "udhcpc-address-only.sh"
BOUND_EVENTS = frozenset({"BOUND", "RENEW", "REBIND", "REBOOT", "bound", "renew"})


class DhcpClientError(LabError):
    """A client got no lease (or failed otherwise); the message carries its output."""


@dataclass(frozen=True, slots=True)
class Lease:
    """What a client was given, as its hook saw it."""

    client: str  # "dhclient" | "udhcpc" | "dhcpcd"
    event: str  # the hook's reason: BOUND, REBOOT, RENEW, bound, renew, ...
    interface: str
    address: ipaddress.IPv4Interface
    router: ipaddress.IPv4Address | None
    dns: tuple[ipaddress.IPv4Address, ...]
    lease_time: int | None
    server_id: ipaddress.IPv4Address | None
    domain: str | None
    hostname: str | None

    @property
    def ip(self) -> ipaddress.IPv4Address:
        return self.address.ip


def parse_events(text: str) -> list[tuple[str, dict[str, str]]]:
    """The hook record file as [(event, {key: value})], oldest first."""
    events: list[tuple[str, dict[str, str]]] = []
    for line in text.splitlines():
        if line.startswith("--- "):
            events.append((line[4:].strip(), {}))
        elif events and "=" in line:
            key, _, value = line.partition("=")
            events[-1][1][key] = value
    return events


def lease_from_values(client: str, event: str, values: dict[str, str]) -> Lease:
    """Build a Lease from hook (or `dhcpcd -U`) values; mask may be dotted or a prefix length."""

    def address_or_none(text: str) -> ipaddress.IPv4Address | None:
        return ipaddress.IPv4Address(text.split()[0]) if text.strip() else None

    lease_text = values.get("lease", "").strip()
    return Lease(
        client=client,
        event=event,
        interface=values.get("interface", ""),
        address=ipaddress.IPv4Interface(f"{values['ip']}/{values.get('mask') or 32}"),
        router=address_or_none(values.get("router", "")),
        dns=tuple(ipaddress.IPv4Address(word) for word in values.get("dns", "").split()),
        lease_time=int(lease_text) if lease_text else None,
        server_id=address_or_none(values.get("serverid", "")),
        domain=values.get("domain") or None,
        hostname=values.get("hostname") or None,
    )


def lease_from_dhcp_message(client: str, interface: str, message: bytes) -> Lease:
    """A Lease from a raw DHCP message (BOOTP header, magic cookie, options), e.g. dhcpcd's lease file."""
    if len(message) < 240 or message[236:240] != b"\x63\x82\x53\x63":
        raise DhcpClientError(f"not a DHCP message ({len(message)} bytes)")
    options: dict[int, bytes] = {}
    offset = 240
    while offset < len(message) and message[offset] != 255:
        code = message[offset]
        if code == 0:
            offset += 1
            continue
        length = message[offset + 1]
        options[code] = options.get(code, b"") + message[offset + 2 : offset + 2 + length]
        offset += 2 + length

    def addresses(code: int) -> list[str]:
        data = options.get(code, b"")
        return [str(ipaddress.IPv4Address(data[i : i + 4])) for i in range(0, len(data) - 3, 4)]

    lease = options.get(51)
    mask = addresses(1)
    return lease_from_values(
        client,
        "bound",
        {
            "interface": interface,
            "ip": str(ipaddress.IPv4Address(message[16:20])),
            "mask": mask[0] if mask else "",
            "router": " ".join(addresses(3)),
            "dns": " ".join(addresses(6)),
            "lease": str(int.from_bytes(lease, "big")) if lease else "",
            "serverid": " ".join(addresses(54)),
            "domain": options.get(15, b"").decode(errors="replace").rstrip("\0"),
            "hostname": options.get(12, b"").decode(errors="replace").rstrip("\0"),
        },
    )


@contextlib.contextmanager
def host_untouched(what: str) -> Iterator[None]:
    """Fail loudly if the host's name configuration changed while `what` ran."""
    before = HostSnapshot.take()
    try:
        yield
    finally:
        before.assert_unchanged(what)


@dataclass
class _Recorder:
    """The file a hook appends events to; `since(mark)` reads only what a later run added."""

    path: Path

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def since(self, mark: int) -> list[tuple[str, dict[str, str]]]:
        if not self.path.exists():
            return []
        with open(self.path) as file:
            file.seek(mark)
            return parse_events(file.read())

    def wait_for(self, mark: int, events: frozenset[str], timeout: float, proc: Proc | None = None) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(event in events for event, _ in self.since(mark)):
                # The hook appends a record with several writes: read again once it has surely finished.
                time.sleep(0.05)
                for event, values in self.since(mark):
                    if event in events:
                        return {"event": event, **values}
            if proc is not None and not proc.alive():
                break
            time.sleep(0.02)
        output = proc.output().strip() if proc is not None else ""
        raise DhcpClientError(f"no {'/'.join(sorted(events))} event within {timeout} s; client said: {output}")


def _bound_lease(client: str, events: list[tuple[str, dict[str, str]]], output: str) -> Lease:
    for event, values in reversed(events):
        if event in BOUND_EVENTS:
            return lease_from_values(client, event, values)
    raise DhcpClientError(f"{client} reported no lease; events {[e for e, _ in events]}; output: {output.strip()}")


# --------------------------------------------------------------------------- dhclient


@dataclass
class Dhclient:
    """ISC dhclient with an address-only hook, its own config, lease file and pid file.

    obtain(): `dhclient -4 -d -1 ...` as a tracked process: one try, and once bound it keeps running
    in the foreground (`-d`: a backgrounded daemon would be orphaned, and this container's init does
    not reap orphans). renew(): stops it and runs it again with the same lease file, so it asks for
    the address it holds (INIT-REBOOT; the hook sees REBOOT). release(): `dhclient -r`.
    """

    ns: Namespace
    iface: str
    timeout: int = 15
    proc: Proc | None = None
    config: Path = field(init=False)
    lease_file: Path = field(init=False)
    pid_file: Path = field(init=False)
    record: _Recorder = field(init=False)

    def __post_init__(self) -> None:
        lab = self.ns.lab
        self.config = lab.tmp_path(f"dhclient-{self.iface}.conf")
        self.lease_file = lab.tmp_path(f"dhclient-{self.iface}.leases")
        self.pid_file = lab.tmp_path(f"dhclient-{self.iface}.pid")
        self.record = _Recorder(lab.tmp_path(f"dhclient-{self.iface}.events"))
        # Our own config: the host's /etc/dhcp/dhclient.conf may send its hostname or request odd options.
        self.config.write_text(
            f"timeout {self.timeout};\nretry 1;\n"
            "request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, host-name,\n"
            "        dhcp-lease-time, dhcp-server-identifier;\n"
        )

    def _argv(self, *flags: str) -> list[str]:
        return [
            "dhclient", "-4", *flags,
            "-sf", str(DHCLIENT_HOOK), "-cf", str(self.config), "-lf", str(self.lease_file),
            "-pf", str(self.pid_file), "-e", f"LAB_RECORD={self.record.path}", self.iface,
        ]  # fmt: skip

    def running(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def obtain(self) -> Lease:
        mark = self.record.mark()
        with host_untouched("dhclient obtain"):
            self.proc = self.ns.popen(self._argv("-d", "-1"))
            values = self.record.wait_for(mark, BOUND_EVENTS, self.timeout + 5, self.proc)
        return lease_from_values("dhclient", values.pop("event"), values)

    def stop(self) -> None:
        """Stop the client without releasing (SIGTERM, as `dhclient -x` would)."""
        if self.proc is not None:
            self.proc.stop()

    def renew(self) -> Lease:
        self.stop()
        return self.obtain()

    def release(self) -> None:
        """DHCPRELEASE the lease (`dhclient -r` also stops the running client); the hook removes the address."""
        with host_untouched("dhclient release"):
            self.ns.run(self._argv("-r"), timeout=self.timeout + 10)
        if self.proc is not None:
            self.proc.wait(5)


# --------------------------------------------------------------------------- udhcpc


@dataclass
class Udhcpc:
    """busybox udhcpc with an address-only hook.

    obtain(): one-shot `udhcpc -f -q -n -t 3 -T 2` (quits once bound, leaves the address).
    start(): a running instance (no -q) so renew() (SIGUSR1) and release() (SIGUSR2) act on it.
    """

    ns: Namespace
    iface: str
    tries: int = 3
    pause: int = 2
    record: _Recorder = field(init=False)
    proc: Proc | None = None

    def __post_init__(self) -> None:
        self.record = _Recorder(self.ns.lab.tmp_path(f"udhcpc-{self.iface}.events"))

    def _argv(self, *flags: str) -> list[str]:
        return [
            "busybox", "udhcpc", "-i", self.iface, "-f", *flags, "-n",
            "-t", str(self.tries), "-T", str(self.pause), "-s", str(UDHCPC_HOOK),
        ]  # fmt: skip

    @property
    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LAB_RECORD": str(self.record.path)}

    @property
    def _budget(self) -> float:
        return self.tries * self.pause + 10

    def obtain(self) -> Lease:
        mark = self.record.mark()
        with host_untouched("udhcpc obtain"):
            result = self.ns.run(self._argv("-q"), check=False, env=self._env, timeout=self._budget)
        if result.returncode != 0:
            raise DhcpClientError(f"udhcpc got no lease ({result.returncode}): {result.stderr.strip()}")
        return _bound_lease("udhcpc", self.record.since(mark), result.stderr)

    def start(self) -> Lease:
        """Run udhcpc in the foreground of a tracked process until bound; it keeps the lease alive."""
        mark = self.record.mark()
        with host_untouched("udhcpc start"):
            self.proc = self.ns.popen(self._argv(), env=self._env)
            values = self.record.wait_for(mark, frozenset({"bound"}), self._budget, self.proc)
        return lease_from_values("udhcpc", values.pop("event"), values)

    def _running(self) -> Proc:
        if self.proc is None or not self.proc.alive():
            raise DhcpClientError("udhcpc is not running: call start() first")
        return self.proc

    def renew(self, timeout: float = 10) -> Lease:
        """SIGUSR1: udhcpc sends a REQUEST for its address; the hook sees renew (or bound if it changed)."""
        proc = self._running()
        mark = self.record.mark()
        with host_untouched("udhcpc renew"):
            proc.signal(signal.SIGUSR1)
            values = self.record.wait_for(mark, frozenset({"renew", "bound"}), timeout, proc)
        return lease_from_values("udhcpc", values.pop("event"), values)

    def release(self, timeout: float = 10) -> None:
        """SIGUSR2: udhcpc sends DHCPRELEASE and deconfigures; then the process is stopped."""
        proc = self._running()
        mark = self.record.mark()
        with host_untouched("udhcpc release"):
            proc.signal(signal.SIGUSR2)
            self.record.wait_for(mark, frozenset({"deconfig"}), timeout, proc)
            proc.stop()


# --------------------------------------------------------------------------- dhcpcd


@dataclass
class Dhcpcd:
    """dhcpcd in one-shot mode with no hook script at all (`-c /bin/true`, resolv.conf/hostname hooks off).

    dhcpcd configures the address itself; the lease it got is read back with `dhcpcd -U`. It keeps
    its lease (the raw DHCPACK) under /var/lib/dhcpcd/<iface>.lease (the lab's unique interface
    names keep those apart); forget() removes it.
    """

    ns: Namespace
    iface: str
    timeout: int = 15

    def _base(self) -> list[str]:
        return ["dhcpcd", "-4", "-f", "/dev/null", "-c", "/bin/true", "-C", "resolv.conf", "-C", "hostname"]

    def lease_path(self) -> Path:
        return Path("/var/lib/dhcpcd") / f"{self.iface}.lease"

    def obtain(self) -> Lease:
        argv = [*self._base(), "-1", "-B", "--noarp", "-t", str(self.timeout), self.iface]
        with host_untouched("dhcpcd obtain"):
            result = self.ns.run(argv, check=False, timeout=self.timeout + 10)
        if result.returncode != 0:
            raise DhcpClientError(f"dhcpcd got no lease ({result.returncode}): {result.stderr.strip()}")
        # dhcpcd 9 stores the server's DHCPACK as is (`dhcpcd -U` needs a running manager).
        return lease_from_dhcp_message("dhcpcd", self.iface, self.lease_path().read_bytes())

    def forget(self) -> None:
        for lease in Path("/var/lib/dhcpcd").glob(f"{self.iface}*.lease*"):
            lease.unlink(missing_ok=True)
