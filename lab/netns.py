"""Network namespaces for system and e2e tests: topology, processes, and a cleanup that always runs.

Everything a Lab creates lives inside namespaces it made itself: veth pairs are created inside a
namespace with their peer placed directly in another one, bridges and taps too, so the host's
interfaces and routes are never touched. Each namespace gets its own /etc/netns/<ns>/{resolv.conf,
hosts,hostname}, which `ip netns exec` bind-mounts over /etc for the commands run there.

Names carry the pid of the test process and a random token (namespaces `isl-<role>-<pid>-<hex>`,
interfaces `<kind><n>-<hex>`), because other test sessions run on the same machine concurrently.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lab import diagnostics

PREFIX = "isl"
NETNS_ETC = Path("/etc/netns")
NETNS_RUN = Path("/run/netns")
_ROLE = re.compile(r"^[a-z0-9]{1,8}$")
_OUR_NAME = re.compile(rf"^{PREFIX}-[a-z0-9]+-(\d+)-[0-9a-f]+$")
_OUR_TMP = re.compile(rf"^{PREFIX}-(\d+)-")


class LabError(RuntimeError):
    """A lab command failed; the message carries the command and its stderr."""


def lab_unavailable_reason() -> str | None:
    """Why a Lab cannot run here (not root, no `ip netns`), or None if it can."""
    if os.geteuid() != 0:
        return "network namespace tests need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`ip netns` is unavailable: {probe.stderr.strip()}"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc; the host's pid namespace sees every lab's)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def process_name(pid: int) -> str:
    """The process's comm ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def descendant_named(pid: int, name: str) -> int | None:
    """The first process called `name` anywhere below `pid` (e.g. a daemon's child under its shell)."""
    todo = child_pids(pid)
    while todo:
        candidate = todo.pop()
        if process_name(candidate) == name:
            return candidate
        todo += child_pids(candidate)
    return None


def _running(pid: int) -> bool:
    """Alive and not a zombie (orphans are reaped by init, which may take its time)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def open_labs(pid: int | None = None) -> diagnostics.LabFiles:
    """The tmp dirs and namespaces of the labs that process `pid` (default: this one) has open."""
    pid = os.getpid() if pid is None else pid
    dirs = tuple(sorted(p for p in Path(tempfile.gettempdir()).glob(f"{PREFIX}-{pid}-*") if p.is_dir()))
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    names = tuple(sorted(name for name in (line.split()[0] for line in listing.splitlines() if line.split())
                         if (m := _OUR_NAME.match(name)) and int(m.group(1)) == pid))
    return diagnostics.LabFiles(dirs, names)


def sweep_stale_labs() -> list[str]:
    """Remove namespaces, /etc/netns dirs and tmp dirs left by lab owners that no longer exist.

    Only names of our own pattern whose embedded pid is dead are touched. Processes are not
    killed here (they were not started by this session); deleting the namespace name only unmounts it.
    """
    removed: list[str] = []
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _OUR_NAME.match(name)
        if match and not _pid_alive(int(match.group(1))):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            removed.append(f"netns {name}")
    if NETNS_ETC.is_dir():
        for directory in NETNS_ETC.iterdir():
            match = _OUR_NAME.match(directory.name)
            if match and not _pid_alive(int(match.group(1))):
                shutil.rmtree(directory, ignore_errors=True)
                removed.append(str(directory))
    for directory in Path(tempfile.gettempdir()).iterdir():
        match = _OUR_TMP.match(directory.name)
        if match and directory.is_dir() and not _pid_alive(int(match.group(1))):
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(str(directory))
    return removed


@dataclass(slots=True)
class Proc:
    """A process the lab started (and will stop); stdout and stderr go to `log`."""

    popen: subprocess.Popen[bytes]
    log: Path
    argv: tuple[str, ...]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM the process group, SIGKILL whatever is left after `grace` seconds."""
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(5)


@dataclass(slots=True)
class Namespace:
    """One network namespace owned by a Lab. Commands run via `ip netns exec` (private /etc files)."""

    name: str
    lab: Lab = field(repr=False)

    @property
    def etc_dir(self) -> Path:
        return NETNS_ETC / self.name

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.lab.run(self, argv, **kwargs)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> Proc:
        return self.lab.popen(self, argv, **kwargs)

    def ip(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`ip -n <ns> ...` (iproute2 enters the namespace itself; no /etc bind mounts needed)."""
        return self.lab.host_command(["ip", "-n", self.name, *args])

    def link_up(self, iface: str) -> None:
        self.ip("link", "set", iface, "up")

    def add_address(self, iface: str, cidr: str) -> None:
        self.ip("addr", "add", cidr, "dev", iface)

    def ipv4_addresses(self, iface: str) -> list[ipaddress.IPv4Interface]:
        output = self.ip("-4", "-o", "addr", "show", "dev", iface).stdout
        return [ipaddress.IPv4Interface(word) for word in re.findall(r"inet (\S+)", output)]

    def pids(self) -> list[int]:
        output = self.lab.host_command(["ip", "netns", "pids", self.name], check=False).stdout
        return [int(word) for word in output.split()]

    def sysctl(self, key: str, value: str) -> None:
        """Set a per-namespace net.* sysctl (only net.* is namespaced; nothing else may be set here)."""
        if not key.startswith("net."):
            raise LabError(f"refusing to set non-namespaced sysctl {key}")
        self.run(["sysctl", "-qw", f"{key}={value}"])


@dataclass(frozen=True, slots=True)
class Pair:
    """A server namespace and a client namespace joined by a veth pair on one /24."""

    server: Namespace
    client: Namespace
    server_if: str
    client_if: str
    subnet: ipaddress.IPv4Network
    server_ip: ipaddress.IPv4Address  # .1 of the subnet, configured on server_if

    def host(self, number: int) -> ipaddress.IPv4Address:
        return self.subnet.network_address + number


@dataclass(frozen=True, slots=True)
class Segment:
    """A server namespace whose bridge (<subnet>.1/24) joins several other namespaces, each by one veth pair:
    one L2 segment with a server and clients (or a rogue server, an attacker) on it."""

    server: Namespace
    bridge: str
    subnet: ipaddress.IPv4Network
    server_ip: ipaddress.IPv4Address
    members: tuple[tuple[Namespace, str], ...]  # (namespace, its interface), in the order asked for

    def host(self, number: int) -> ipaddress.IPv4Address:
        return self.subnet.network_address + number


@dataclass
class Lab:
    """Namespaces, links and processes for one test; `close()` (or the context manager) removes all of it."""

    token: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[Namespace] = field(default_factory=list)
    processes: list[Proc] = field(default_factory=list)
    subnets: set[ipaddress.IPv4Network] = field(default_factory=set)
    tmp: Path = field(init=False)
    _counter: int = 0

    def __post_init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{os.getpid()}-{self.token}-"))

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, Exception):
            # The test's failure explains itself: what ran, what the consoles and daemons said last.
            with contextlib.suppress(Exception):
                exc.add_note(self.diagnostics())
        self.close()

    def diagnostics(self) -> str:
        """Processes, console and log tails of this lab (lab/diagnostics.py)."""
        return diagnostics.report(diagnostics.LabFiles((self.tmp,), tuple(ns.name for ns in self.namespaces)))

    # ---------------------------------------------------------------- names and commands

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    def ifname(self, kind: str) -> str:
        """A unique interface name such as "vs1-a1b2c3" (kind: 2 letters; at most 15 characters)."""
        name = f"{kind}{self._next()}-{self.token}"
        if len(name) > 15:
            raise LabError(f"interface name {name} is longer than 15 characters")
        return name

    def tmp_path(self, name: str) -> Path:
        """A fresh path inside this lab's tmp dir (removed by close())."""
        return self.tmp / f"{self._next()}-{name}"

    def host_command(
        self, argv: Sequence[str], check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run an `ip` command from the host side (only ever `ip netns ...` or `ip -n <our ns> ...`)."""
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise LabError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def run(
        self,
        ns: Namespace,
        argv: Sequence[str],
        check: bool = True,
        timeout: float = 60,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to completion inside `ns`; its output is captured, a failure raises LabError."""
        full = ["ip", "netns", "exec", ns.name, *argv]
        try:
            result = subprocess.run(
                full, capture_output=True, text=True, timeout=timeout, input=input, env=env, start_new_session=True
            )
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"{' '.join(argv)} in {ns.name} timed out after {timeout} s") from exc
        if check and result.returncode != 0:
            raise LabError(
                f"{' '.join(argv)} in {ns.name} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def popen(
        self, ns: Namespace, argv: Sequence[str], env: dict[str, str] | None = None, stdin: IO[bytes] | None = None
    ) -> Proc:
        """Start a long-running command inside `ns` in its own process group; tracked for cleanup."""
        log = self.tmp_path(Path(argv[0]).name + ".log")
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                ["ip", "netns", "exec", ns.name, *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        proc = Proc(popen=popen, log=log, argv=tuple(argv))
        self.processes.append(proc)
        return proc

    # ---------------------------------------------------------------- topology

    def namespace(self, role: str) -> Namespace:
        """A new namespace with lo up, its own /etc/netns files, and IPv6 DAD off (link-locals usable at once)."""
        if not _ROLE.match(role):
            raise LabError(f"namespace role {role!r} must be 1-8 lowercase letters or digits")
        name = f"{PREFIX}-{role}-{os.getpid()}-{self.token}{self._next()}"
        etc = NETNS_ETC / name
        etc.mkdir(parents=True, exist_ok=False)
        ns = Namespace(name=name, lab=self)
        # Registered before creation so close() removes the /etc dir even if `ip netns add` fails.
        self.namespaces.append(ns)
        (etc / "resolv.conf").write_text(f"# {name}: private to this test namespace\nnameserver 127.0.0.1\n")
        (etc / "hosts").write_text(f"127.0.0.1\tlocalhost {role}\n::1\tlocalhost ip6-localhost\n")
        (etc / "hostname").write_text(f"{role}\n")
        self.host_command(["ip", "netns", "add", name])
        ns.link_up("lo")
        ns.sysctl("net.ipv6.conf.all.accept_dad", "0")
        ns.sysctl("net.ipv6.conf.default.accept_dad", "0")
        return ns

    def veth(self, a: Namespace, a_if: str, b: Namespace, b_if: str) -> None:
        """A veth pair created inside `a` with its peer placed straight into `b`; both ends up."""
        a.ip("link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b.name)
        a.link_up(a_if)
        b.link_up(b_if)

    def bridge(self, ns: Namespace, name: str, ports: Sequence[str] = ()) -> None:
        """A bridge inside `ns` (no STP, no forwarding delay) with `ports` enslaved; all up."""
        ns.ip("link", "add", name, "type", "bridge", "stp_state", "0", "forward_delay", "0")
        for port in ports:
            ns.ip("link", "set", port, "master", name)
        ns.link_up(name)

    def tap(self, ns: Namespace, name: str, bridge: str | None = None) -> None:
        """A tap device inside `ns` (for QEMU running there), optionally on a bridge; up."""
        ns.ip("tuntap", "add", "dev", name, "mode", "tap")
        if bridge:
            ns.ip("link", "set", name, "master", bridge)
        ns.link_up(name)

    def random_subnet(self) -> ipaddress.IPv4Network:
        """A /24 in 10.0.0.0/8 chosen at random, distinct within this lab (it only exists in namespaces)."""
        while True:
            subnet = ipaddress.IPv4Network(f"10.{secrets.randbelow(254) + 1}.{secrets.randbelow(256)}.0/24")
            if subnet not in self.subnets:
                self.subnets.add(subnet)
                return subnet

    def server_client_pair(self) -> Pair:
        """Server ns with <subnet>.1/24 on its veth end; client ns with an unconfigured veth end (up)."""
        server = self.namespace("srv")
        client = self.namespace("cli")
        server_if, client_if = self.ifname("vs"), self.ifname("vc")
        self.veth(server, server_if, client, client_if)
        subnet = self.random_subnet()
        server_ip = subnet.network_address + 1
        server.add_address(server_if, f"{server_ip}/{subnet.prefixlen}")
        return Pair(server, client, server_if, client_if, subnet, server_ip)

    def segment(self, *roles: str) -> Segment:
        """A server ns with a bridge on <subnet>.1/24 and one namespace per role, each joined by a veth (up,
        unconfigured on the member's side)."""
        server = self.namespace("srv")
        bridge = self.ifname("br")
        members: list[tuple[Namespace, str]] = []
        ports: list[str] = []
        for role in roles:
            member, port, iface = self.namespace(role), self.ifname("vs"), self.ifname("v" + role[0])
            self.veth(server, port, member, iface)
            members.append((member, iface))
            ports.append(port)
        self.bridge(server, bridge, ports)
        subnet = self.random_subnet()
        server_ip = subnet.network_address + 1
        server.add_address(bridge, f"{server_ip}/{subnet.prefixlen}")
        return Segment(server, bridge, subnet, server_ip, tuple(members))

    # ---------------------------------------------------------------- cleanup

    def close(self) -> None:
        """Stop tracked processes, kill what still runs in our namespaces, delete them and their files."""
        errors: list[str] = []
        for proc in reversed(self.processes):
            try:
                proc.stop()
            except Exception as exc:  # keep cleaning; report at the end
                errors.append(f"stop {proc.argv[0]} (pid {proc.pid}): {exc}")
        for ns in self.namespaces:
            # Daemons our commands started in the background live on in the namespace: kill them and
            # wait until they are really gone (a killed process leaves the namespace before it has exited).
            killed = ns.pids()
            for pid in killed:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while (ns.pids() or any(map(_running, killed))) and time.monotonic() < deadline:
                time.sleep(0.02)
            if (NETNS_RUN / ns.name).exists():
                result = self.host_command(["ip", "netns", "del", ns.name], check=False)
                if result.returncode != 0:
                    errors.append(f"ip netns del {ns.name}: {result.stderr.strip()}")
            shutil.rmtree(ns.etc_dir, ignore_errors=True)
        self.namespaces.clear()
        self.processes.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if errors:
            raise LabError("lab cleanup incomplete: " + "; ".join(errors))
