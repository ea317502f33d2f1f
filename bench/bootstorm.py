"""A boot storm: N machines powered on within one second walk the PXE chain, against the imageserver and
against the stack a site glues together instead (dnsmasq for DHCP + TFTP, nginx for HTTP).

No VMs: each machine is a coroutine of this process doing on the wire what its firmware does, from its own
MAC and its own leased address:
  dhcp1          the PXE ROM's DISCOVER/OFFER/REQUEST/ACK (option 60 PXEClient, 93 = 0, 94, 97; broadcast
                 flag), retransmitted after 4, 8, 16, 32 s as the PXE spec has it; a NAK starts over
  tftp           the ROM's fetch of the boot file (undionly.kpxe from the ipxe package): first an RRQ asking
                 only tsize, aborted with an ERROR once the size is known (what Intel ROMs do), then the
                 transfer in lock-step (blksize 1468, no windowsize: a ROM's), each RRQ/ACK resent after
                 1, 2, 4, 8 s
  dhcp2          iPXE's own DORA (user class iPXE, client id, option 175), retransmitted after 1, 2, 4, 8 s
  script         GET of the boot script URL the second ACK named (${mac} filled in as iPXE does)
  kernel+initrd  GET of the kernel and the initrd the script names, on the same keep-alive connection
                 (HTTP: up to 3 attempts, 1 s apart, as an iPXE script's retry loop)
A machine fails when a stage runs out of tries; every resend and new attempt counts as a retry.

Both stacks serve the same files: the imageserver with its shipped defaults (its hosts registered, due to
install an image, so the boot script it renders names the installer's kernel and initrd); dnsmasq with its
defaults, nginx with Debian's (`worker_processes auto`, sendfile, access log) and a static boot script of the
same shape. Both TFTP servers may run 1000 transfers at once (`--tftp-max`: dnsmasq's default 50 and our 256
are below a storm of lock-step transfers). Logging stays
as each ships it (the imageserver's "info", dnsmasq's DHCP and TFTP lines, nginx's access log), into files.
Neither server probes an address with ping before offering it: the clients' addresses are answered by the
client namespace as a whole (an AnyIP route), so every probe would find its address taken.

The topology: a server namespace and a client namespace joined by one veth pair (a /20; the pool is a /22
that the client namespace takes as local, so each machine binds its own leased address without an
`ip addr add` per machine). This process enters the client namespace (setns) for the storm only; its
sockets live there, the host's interfaces are never touched. Both stacks run one after the other for each
N, each from a fresh state, with the same MACs and the same power-on moments.

Prints per N and stack: seconds until the last machine has its initrd, p50/p99 per stage, retries,
failures, the servers' CPU seconds (from /proc), and the ratio (glued stack's time / ours: > 1 is ours
faster). Exits 1 if a machine failed against the imageserver.

The machines' side runs on uvloop when it is installed (the cheaper the harness, the more the storm measures
the servers). `--profile PREFIX` writes a py-spy profile of the daemon per N and prints each stack's CPU per
second of the storm (whether a server is saturated or waiting).

Run (root): python3 bench/bootstorm.py [--machines 50 200 500] [--rounds 1] [--kernel-mib 8] [--initrd-mib 7]
                                     [--tftp-max 1000] [--event-loop uvloop] [--profile PREFIX] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Protocol, TypeVar

REPO = Path(__file__).resolve().parent.parent
# bench/http.py would shadow the stdlib's http module that aiohttp imports: the repository root instead.
sys.path[0] = str(REPO)

import aiohttp  # noqa: E402

from bench._cpu import own_cpu, process_cpu  # noqa: E402
from bench._smoke import parse_args, peer_available  # noqa: E402
from lab.daemon import Daemon  # noqa: E402
from lab.netns import Lab, Namespace, Proc, child_pids, lab_unavailable_reason  # noqa: E402
from lab.servers import wait_for_listener  # noqa: E402
from protocols.dhcp.codec import DhcpError, DhcpPacket, decode, encode  # noqa: E402
from protocols.tftp.packets import (  # noqa: E402
    Data,
    Error,
    OptionAck,
    ReadRequest,
    TftpError,
    decode_packet,
    encode_ack,
    encode_error,
    encode_request,
)

STAGES = ("dhcp1", "tftp", "dhcp2", "script", "kernel+initrd")
UNDIONLY = Path("/usr/lib/ipxe/undionly.kpxe")
IMAGE = "storm"
BROADCAST_FLAG = 0x8000
PXE_CLASS = b"PXEClient:Arch:00000:UNDI:002001"
# The parameter request lists of an Intel PXE ROM and of iPXE: what decides which options a server puts in.
ROM_PRL = bytes([1, 2, 3, 5, 6, 11, 12, 13, 15, 16, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51, 54, 58, 59, 60,
                 66, 67, 97, 128, 129, 130, 131, 132, 133, 134, 135])
IPXE_PRL = bytes([1, 3, 6, 7, 12, 15, 17, 26, 43, 60, 66, 67, 119, 128, 129, 130, 131, 132, 133, 134, 135, 175,
                  203])
ROM_DHCP_TIMEOUTS = (4.0, 8.0, 16.0, 32.0)  # PXE spec 2.1: DISCOVER resent after 4, 8, 16, 32 s
IPXE_DHCP_TIMEOUTS = (1.0, 2.0, 4.0, 8.0)
TFTP_TIMEOUTS = (1.0, 2.0, 4.0, 8.0)
HTTP_ATTEMPTS = 3
NAK_RESTARTS = 4
CLONE_NEWNET = 0x40000000
SO_RCVBUFFORCE = 33  # Linux; the socket module does not name it
RCVBUF = 8 << 20  # each real machine has its own NIC: the bench's shared sockets must not be what drops

T = TypeVar("T")


class StageFailed(RuntimeError):
    """A stage ran out of tries, or a server refused (a ROM stops there)."""


# ============================================================================ one machine


@dataclass(slots=True)
class Machine:
    mac: str
    power_on: float  # seconds after the storm's start
    stages: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (start, end), loop time
    retries: Counter[str] = field(default_factory=Counter)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and "kernel+initrd" in self.stages

    def seconds(self, stage: str) -> float:
        start, end = self.stages[stage]
        return end - start


async def timed(m: Machine, name: str, work: Awaitable[T]) -> T:
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        return await work
    except Exception as exc:
        raise StageFailed(f"{name}: {type(exc).__name__}: {exc}") from exc
    finally:
        m.stages[name] = (start, loop.time())


class DhcpPort:
    """Port 68 of the client namespace, shared by every machine (all replies are broadcast); matched by xid."""

    def __init__(self, iface: str) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        sock.bind(("0.0.0.0", 68))
        sock.setblocking(False)
        self.sock = sock
        self.waiting: dict[int, tuple[frozenset[int], asyncio.Future[DhcpPacket]]] = {}
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(sock.fileno(), self._readable)

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            try:
                reply = decode(data)
            except DhcpError:
                continue
            entry = self.waiting.get(reply.xid)
            if reply.op == 2 and entry is not None and reply.message_type in entry[0] and not entry[1].done():
                entry[1].set_result(reply)

    async def exchange(self, packet: DhcpPacket, expect: frozenset[int], timeouts: Sequence[float],
                       m: Machine, stage: str) -> DhcpPacket:
        data = encode(packet)
        for attempt, timeout in enumerate(timeouts):
            if attempt:
                m.retries[stage] += 1
            fut: asyncio.Future[DhcpPacket] = self.loop.create_future()
            self.waiting[packet.xid] = (expect, fut)
            try:
                self.sock.sendto(data, ("255.255.255.255", 67))
                return await asyncio.wait_for(fut, timeout)
            except (TimeoutError, BlockingIOError):
                continue
            finally:
                self.waiting.pop(packet.xid, None)
        raise StageFailed(f"no DHCP reply of type {sorted(expect)} after {len(timeouts)} tries")

    async def dora(self, mac: str, options: dict[int, bytes], timeouts: Sequence[float], m: Machine,
                   stage: str) -> DhcpPacket:
        """DISCOVER/OFFER/REQUEST/ACK; a NAK (the offered address went to another machine meanwhile) starts
        over from DISCOVER, as RFC 2131 has a client do, up to NAK_RESTARTS times (each one a retry)."""
        chaddr = bytes.fromhex(mac.replace(":", "")).ljust(16, b"\x00")
        for restart in range(NAK_RESTARTS + 1):
            if restart:
                m.retries[stage] += 1
            xid = random.getrandbits(32)
            offer = await self.exchange(DhcpPacket(xid=xid, flags=BROADCAST_FLAG, chaddr=chaddr,
                                                   options={53: b"\x01", **options}), frozenset({2}), timeouts, m,
                                        stage)
            request = DhcpPacket(xid=xid, flags=BROADCAST_FLAG, chaddr=chaddr,
                                 options={53: b"\x03", 50: offer.yiaddr.packed, 54: offer.options[54], **options})
            ack = await self.exchange(request, frozenset({5, 6}), timeouts, m, stage)
            if ack.message_type == 5:
                return ack
        raise StageFailed(f"DHCPNAK {NAK_RESTARTS + 1} times (last for {offer.yiaddr})")


class _TftpEndpoint(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((data, addr))


async def _tftp_request(ip: str, server: str, name: str, options: dict[str, str], blksize: int | None,
                        m: Machine) -> int:
    """One RRQ from a fresh port of `ip`. With blksize None: take the OACK's tsize and abort (the ROM's size
    probe); else the file in lock-step. Returns the size (probe) or the bytes received."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_TftpEndpoint, local_addr=(ip, 0))
    try:
        packet = encode_request(ReadRequest(name, "octet", options))
        dest: tuple[str, int] = (server, 69)
        peer: tuple[str, int] | None = None
        expected, received, size = 1, 0, 512
        tries = 0
        transport.sendto(packet, dest)
        while True:
            try:
                data, addr = await asyncio.wait_for(proto.queue.get(), TFTP_TIMEOUTS[tries])
            except TimeoutError:
                tries += 1
                if tries == len(TFTP_TIMEOUTS):
                    raise StageFailed(f"TFTP timeout ({'request' if peer is None else f'block {expected}'})"
                                      ) from None
                m.retries["tftp"] += 1
                transport.sendto(packet, dest)
                continue
            if peer is not None and addr != peer:
                continue  # another transfer's port (a late reply to the probe)
            try:
                reply = decode_packet(data)
            except TftpError:
                continue
            if isinstance(reply, Error):
                raise StageFailed(f"TFTP error {reply.code}: {reply.message}")
            if peer is None:
                peer = dest = addr  # the server's transfer port (its TID)
            if isinstance(reply, OptionAck):
                if blksize is None:
                    transport.sendto(encode_error(0, "TFTP Aborted"), dest)
                    return int(reply.options.get("tsize", "0"))
                size = int(reply.options.get("blksize", "512"))
                packet, tries = encode_ack(0), 0
                transport.sendto(packet, dest)
            elif isinstance(reply, Data):
                if reply.block == expected & 0xFFFF:
                    received += len(reply.payload)
                    packet, tries = encode_ack(reply.block), 0
                    transport.sendto(packet, dest)
                    if len(reply.payload) < size:
                        return received
                    expected += 1
                elif reply.block == (expected - 1) & 0xFFFF:
                    transport.sendto(packet, dest)  # our ACK was lost: say it again
    finally:
        transport.close()


async def tftp_fetch(ip: str, server: str, name: str, blksize: int, m: Machine) -> int:
    size = await _tftp_request(ip, server, name, {"tsize": "0"}, None, m)
    got = await _tftp_request(ip, server, name, {"blksize": str(blksize), "tsize": "0"}, blksize, m)
    if size and got != size:
        raise StageFailed(f"TFTP gave {got} bytes of {size}")
    return got


async def http_get(session: aiohttp.ClientSession, url: str, m: Machine, stage: str) -> bytes | int:
    """GET url (retried as an iPXE script's loop would); a script comes back as bytes, a file as its length."""
    for attempt in range(HTTP_ATTEMPTS):
        if attempt:
            m.retries[stage] += 1
            await asyncio.sleep(1.0)
        try:
            async with session.get(url) as response:
                if response.status != 200:
                    raise StageFailed(f"GET {url}: HTTP {response.status}")
                if url.endswith(".ipxe"):
                    return await response.read()
                length = 0
                async for chunk in response.content.iter_any():
                    length += len(chunk)
                if response.content_length is not None and length != response.content_length:
                    raise StageFailed(f"GET {url}: {length} of {response.content_length} bytes")
                return length
        except (aiohttp.ClientError, TimeoutError) as exc:
            if attempt == HTTP_ATTEMPTS - 1:
                raise StageFailed(f"GET {url}: {type(exc).__name__}: {exc}") from exc
    raise AssertionError("unreachable")


_SCRIPT_URL = re.compile(r"^\s*(kernel|initrd)\b.*?(https?://\S+)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Chain:
    """What every machine is run against: the client interface, and the sizes it must receive."""

    iface: str
    boot_size: int
    file_bytes: int  # kernel + initrd
    blksize: int


async def machine(port: DhcpPort, chain: Chain, m: Machine, start: float) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start + m.power_on - loop.time()))
    mac_bytes = bytes.fromhex(m.mac.replace(":", ""))
    uuid = bytes(10) + mac_bytes
    rom = {60: PXE_CLASS, 93: b"\x00\x00", 94: b"\x01\x02\x01", 97: b"\x00" + uuid, 55: ROM_PRL,
           57: (1260).to_bytes(2, "big")}
    try:
        ack = await timed(m, "dhcp1", port.dora(m.mac, rom, ROM_DHCP_TIMEOUTS, m, "dhcp1"))
        ip = str(ack.yiaddr)
        boot_file = (ack.options.get(67) or ack.file).rstrip(b"\x00").decode()
        server = str(ack.siaddr) if int(ack.siaddr) else str(IPv4Address(ack.options[54]))
        got = await timed(m, "tftp", tftp_fetch(ip, server, boot_file, chain.blksize, m))
        if got != chain.boot_size:
            raise StageFailed(f"tftp: {boot_file} came as {got} bytes, not {chain.boot_size}")
        ipxe = {**rom, 55: IPXE_PRL, 57: (1472).to_bytes(2, "big"), 61: b"\x01" + mac_bytes, 77: b"iPXE",
                175: bytes.fromhex("b10501")}
        ack2 = await timed(m, "dhcp2", port.dora(m.mac, ipxe, IPXE_DHCP_TIMEOUTS, m, "dhcp2"))
        ip = str(ack2.yiaddr)
        url = (ack2.options.get(67) or ack2.file).rstrip(b"\x00").decode()
        url = url.replace("${net0/mac}", m.mac).replace("${mac}", m.mac)
        if not url.startswith("http://"):
            raise StageFailed(f"dhcp2: boot file {url!r} is no HTTP URL")
        connector = aiohttp.TCPConnector(local_addr=(ip, 0), limit=1)
        timeout = aiohttp.ClientTimeout(total=600, sock_connect=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
            script = await timed(m, "script", http_get(session, url, m, "script"))
            assert isinstance(script, bytes)
            urls = dict((kind, u) for kind, u in _SCRIPT_URL.findall(script.decode(errors="replace")))
            if urls.keys() != {"kernel", "initrd"}:
                raise StageFailed(f"script: names no kernel and initrd: {script[:300]!r}")

            async def both() -> int:
                kernel = await http_get(session, urls["kernel"], m, "kernel+initrd")
                initrd = await http_get(session, urls["initrd"], m, "kernel+initrd")
                assert isinstance(kernel, int) and isinstance(initrd, int)
                return kernel + initrd

            got = await timed(m, "kernel+initrd", both())
            if got != chain.file_bytes:
                raise StageFailed(f"kernel+initrd: {got} bytes, not {chain.file_bytes}")
    except Exception as exc:
        m.error = str(exc) if isinstance(exc, StageFailed) else f"{type(exc).__name__}: {exc}"


@dataclass(slots=True)
class Storm:
    machines: list[Machine]
    start: float  # loop time of the storm's second 0
    client_cpu: float = 0.0

    @property
    def failed(self) -> list[Machine]:
        return [m for m in self.machines if not m.ok]

    def last_initrd(self) -> float:
        done = [m.stages["kernel+initrd"][1] for m in self.machines if m.ok]
        return max(done) - self.start if done else float("nan")


async def storm(chain: Chain, macs: Sequence[str], power_on: Sequence[float]) -> Storm:
    port = DhcpPort(chain.iface)
    try:
        loop = asyncio.get_running_loop()
        cpu = own_cpu()
        result = Storm([Machine(mac, at) for mac, at in zip(macs, power_on, strict=True)], loop.time() + 0.2)
        await asyncio.gather(*(machine(port, chain, m, result.start) for m in result.machines))
        result.client_cpu = own_cpu() - cpu
        return result
    finally:
        port.close()


# ============================================================================ the network


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


@contextlib.contextmanager
def inside(ns: Namespace) -> Iterator[None]:
    """This thread in `ns`'s network namespace (sockets made meanwhile live there), then back home."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns.name}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)
        os.close(target)


@dataclass(frozen=True, slots=True)
class Topology:
    lab: Lab
    srv: Namespace
    cli: Namespace
    srv_if: str
    cli_if: str
    subnet: IPv4Network  # a /20
    pool: IPv4Network  # a /22 inside it, local to the client namespace

    @property
    def server_ip(self) -> IPv4Address:
        return self.subnet.network_address + 1

    @property
    def pool_range(self) -> tuple[IPv4Address, IPv4Address]:
        return self.pool.network_address + 1, self.pool.broadcast_address - 1

    @classmethod
    def build(cls, lab: Lab) -> Topology:
        srv, cli = lab.namespace("srv"), lab.namespace("cli")
        srv_if, cli_if = lab.ifname("vs"), lab.ifname("vc")
        lab.veth(srv, srv_if, cli, cli_if)
        subnet = IPv4Network(f"10.{secrets.randbelow(254) + 1}.{secrets.randbelow(16) * 16}.0/20")
        pool = IPv4Network(f"{subnet.network_address + 2048}/22")
        srv.add_address(srv_if, f"{subnet.network_address + 1}/20")
        cli.add_address(cli_if, f"{subnet.network_address + 2}/20")  # the on-link route to the server
        # Every pool address is this namespace's own (AnyIP): it answers ARP for each, and a machine binds
        # the address it was leased without an `ip addr add` per machine.
        cli.ip("route", "add", "local", str(pool), "dev", "lo")
        return cls(lab, srv, cli, srv_if, cli_if, subnet, pool)


@dataclass(frozen=True, slots=True)
class BootFiles:
    """The same files for both stacks."""

    boot: Path  # undionly.kpxe
    kernel: Path
    initrd: Path


def make_files(lab: Lab, kernel_bytes: int, initrd_bytes: int) -> BootFiles:
    root = lab.tmp_path("files")
    root.mkdir()
    files = BootFiles(root / "undionly.kpxe", root / "vmlinuz", root / "initrd.img")
    shutil.copyfile(UNDIONLY, files.boot)
    for path, size in ((files.kernel, kernel_bytes), (files.initrd, initrd_bytes)):
        with open(path, "wb") as f:  # random: as incompressible as a real kernel and gzip'd initrd
            for offset in range(0, size, 1 << 20):
                f.write(os.urandom(min(1 << 20, size - offset)))
    return files


def _place(files: BootFiles, root: Path) -> None:
    """undionly.kpxe and installer/{vmlinuz,initrd.img} under `root` (hard links: the very same files)."""
    (root / "installer").mkdir(parents=True, exist_ok=True)
    for source, name in ((files.boot, "undionly.kpxe"), (files.kernel, "installer/vmlinuz"),
                         (files.initrd, "installer/initrd.img")):
        os.link(source, root / name)


def tree_cpu(pid: int) -> float:
    """CPU seconds of `pid` and every process below it (nginx's workers)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError, IndexError):
            total += process_cpu(current)
        todo += child_pids(current)
    return total


# ============================================================================ the two stacks


class Stack(Protocol):
    name: str

    def start(self, macs: Sequence[str]) -> None:
        """Fresh state, every machine's MAC known where the stack keeps such things; returns once serving."""

    def cpu_seconds(self) -> float:
        """CPU seconds the stack's processes have used so far."""

    def stop(self) -> None: ...


class Imageserver(Stack):
    name = "imageserver"

    def __init__(self, topo: Topology, files: BootFiles, tftp_max: int, event_loop: str | None) -> None:
        self.topo, self.files, self.tftp_max, self.event_loop = topo, files, tftp_max, event_loop
        self.daemon: Daemon | None = None

    def start(self, macs: Sequence[str]) -> None:
        t = self.topo
        state = t.lab.tmp_path("state")
        _place(self.files, state / "boot")
        _register_hosts(state, macs)
        low, high = t.pool_range
        config = t.lab.tmp_path("imageserver.toml")
        config.write_text(f"""
[appliance]
state_dir = "{state}"
interface = "{t.srv_if}"
address = "{t.server_ip}"

{f'event_loop = "{self.event_loop}"' if self.event_loop else ""}

[dhcp]
subnet = "{t.subnet}"
pool = "{low}-{high}"
conflict_probe = false  # the client namespace answers every pool address (see the module's docstring)
rogue_probe = 0

[tftp]
max_transfers = {self.tftp_max}

[rsyncd]
enabled = false
""")
        self.daemon = Daemon(t.srv, config, state).start(timeout=120)
        assert self.daemon.proc is not None
        for proto, port in (("udp", 67), ("udp", 69), ("tcp", 80)):
            wait_for_listener(t.srv, proto, port, self.daemon.proc)

    def pid(self) -> int:
        assert self.daemon is not None and self.daemon.proc is not None
        return self.daemon.proc.pid

    def cpu_seconds(self) -> float:
        return tree_cpu(self.pid())

    def stop(self) -> None:
        if self.daemon is not None and self.daemon.alive():
            self.daemon.stop()
            log = self.daemon.log()
            if "Traceback" in log:
                print("WARNING: the imageserver logged a traceback:\n" + log[-3000:], flush=True)


def _register_hosts(state: Path, macs: Sequence[str]) -> None:
    """An image and one host per machine, due to install it: each boot script then names kernel and initrd
    (as on the day a site installs its racks)."""
    from appliance.images.catalog import Catalog
    from state.bulkload import bulk_load
    from state.db import connect, db_path
    from state.hosts import Host

    catalog = Catalog(state)
    try:
        staged = catalog.new_staging(IMAGE)
        (staged / "etc").mkdir()
        (staged / "etc" / "hostname").write_text("storm\n")
        catalog.register(IMAGE, staged, source="bench/bootstorm.py", layout_json=None)
    finally:
        catalog.close()
    now = time.time()
    conn = connect(db_path(state))
    try:
        bulk_load(conn, hosts=(Host(f"storm{i:04}", mac, None, IMAGE, None, "assigned", now, now)
                               for i, mac in enumerate(macs)))
    finally:
        conn.close()


IPXE_SCRIPT = """#!ipxe
kernel --name vmlinuz http://{server}/boot/files/installer/vmlinuz initrd=initrd.img console=tty0 console=ttyS0,115200 \
|| goto failed
initrd --name initrd.img http://{server}/boot/files/installer/initrd.img || goto failed
boot || goto failed
:failed
echo Boot failed
shell
"""


class Glued(Stack):
    """dnsmasq (DHCP + TFTP) and nginx (HTTP), configured as a site would for the same chain."""

    name = "dnsmasq+nginx"

    def __init__(self, topo: Topology, files: BootFiles, tftp_max: int, nginx_workers: str) -> None:
        self.topo, self.files, self.tftp_max, self.workers = topo, files, tftp_max, nginx_workers
        self.procs: list[Proc] = []

    def start(self, macs: Sequence[str]) -> None:
        t = self.topo
        site = t.lab.tmp_path("site")
        root = site / "tftpboot"
        _place(self.files, root)
        (site / "scripts").mkdir()
        (site / "scripts" / "boot.ipxe").write_text(IPXE_SCRIPT.format(server=t.server_ip))
        for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (site / name).mkdir()
        low, high = t.pool_range
        dnsmasq = t.srv.popen([
            "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", f"--interface={t.srv_if}",
            "--user=root", "--pid-file=", f"--log-facility={site / 'dnsmasq.log'}",
            f"--dhcp-range={low},{high},{t.subnet.netmask},1h", "--dhcp-authoritative", "--no-ping",
            f"--dhcp-leasefile={site / 'dnsmasq.leases'}", "--dhcp-lease-max=4096",
            "--dhcp-userclass=set:ipxe,iPXE", "--dhcp-boot=tag:!ipxe,undionly.kpxe",
            f"--dhcp-boot=tag:ipxe,http://{t.server_ip}/boot/${{mac}}.ipxe",
            "--enable-tftp", f"--tftp-root={root}", f"--tftp-max={self.tftp_max}"])
        self.procs.append(dnsmasq)
        conf = site / "nginx.conf"
        conf.write_text(f"""
daemon off;
master_process on;
worker_processes {self.workers};
user root root;
pid {site}/nginx.pid;
error_log {site}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    default_type application/octet-stream;
    access_log {site}/nginx-access.log;
    client_body_temp_path {site}/body;
    proxy_temp_path {site}/proxy;
    fastcgi_temp_path {site}/fastcgi;
    uwsgi_temp_path {site}/uwsgi;
    scgi_temp_path {site}/scgi;
    server {{
        listen {t.server_ip}:80;
        location /boot/files/ {{ alias {root}/; }}
        location ~ ^/boot/[^/]+\\.ipxe$ {{ root {site}/scripts; default_type text/plain; try_files /boot.ipxe =404; }}
    }}
}}
""")
        nginx = t.srv.popen(["nginx", "-c", str(conf), "-p", str(site)])
        self.procs.append(nginx)
        wait_for_listener(t.srv, "udp", 67, dnsmasq)
        wait_for_listener(t.srv, "udp", 69, dnsmasq)
        wait_for_listener(t.srv, "tcp", 80, nginx)

    def cpu_seconds(self) -> float:
        return sum(tree_cpu(proc.pid) for proc in self.procs)

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()
        self.procs.clear()


# ============================================================================ the report


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else float("nan")


@dataclass(slots=True)
class Round:
    stack: str
    n: int
    storm: Storm
    server_cpu: float


def table_line(n: int, stack: str, rounds: Sequence[Round]) -> str:
    """One stack at one N: the median round's last initrd (every round's in brackets when there are several),
    stage percentiles over the machines of all rounds, retries and failures summed, CPU per round (median)."""
    machines = [m for r in rounds for m in r.storm.machines]
    cells = []
    for stage in STAGES:
        d = [m.seconds(stage) * 1000 for m in machines if m.ok]
        cells.append(f"{pct(d, 50):6.0f}/{pct(d, 99):<6.0f}")
    times = [r.storm.last_initrd() for r in rounds]
    every = f" [{' '.join(f'{t:.1f}' for t in times)}]" if len(times) > 1 else ""
    retries = sum(sum(m.retries.values()) for m in machines)
    failed = sum(len(r.storm.failed) for r in rounds)
    server_cpu = statistics.median(r.server_cpu for r in rounds)
    client_cpu = statistics.median(r.storm.client_cpu for r in rounds)
    return (f"{n:5} {stack:14} {statistics.median(times):8.2f} s  {' '.join(cells)} {retries:7} {failed:6} "
            f"{server_cpu:9.2f} {client_cpu:9.2f}{every}")


HEADER = (f"{'N':>5} {'stack':14} {'last initrd':>10}  "
          + " ".join(f"{s:^13}" for s in STAGES)
          + f" {'retries':>7} {'failed':>6} {'srv CPU s':>9} {'cli CPU s':>9}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--machines", type=int, nargs="+", default=[50, 200, 500], help="storm sizes N")
    parser.add_argument("--rounds", type=int, default=1, help="storms per N and stack (interleaved)")
    parser.add_argument("--kernel-mib", type=float, default=8.0, help="kernel size (Debian 12's vmlinuz: ~8 MB)")
    parser.add_argument("--initrd-mib", type=float, default=7.0, help="initrd size (the installer's: ~7 MB)")
    parser.add_argument("--blksize", type=int, default=1468, help="the ROM's TFTP blksize (lock-step)")
    parser.add_argument("--tftp-max", type=int, default=1000,
                        help="concurrent TFTP transfers, both servers ([tftp] max_transfers, dnsmasq --tftp-max)")
    parser.add_argument("--event-loop", choices=("asyncio", "uvloop", "auto"),
                        help="the imageserver's [appliance] event_loop (default: as shipped)")
    parser.add_argument("--nginx-workers", default="auto", help="nginx worker_processes (Debian's default: auto)")
    parser.add_argument("--profile", metavar="PREFIX",
                        help="py-spy the imageserver during its storms into PREFIX.<N> (collapsed stacks), and print "
                             "each stack's CPU per second of the storm")
    parser.add_argument("--seed", type=int, default=27, help="power-on moments and MACs")
    args = parse_args(parser, {"machines": [5], "rounds": 1, "kernel_mib": 0.25, "initrd_mib": 0.5})
    reason = lab_unavailable_reason()
    if reason:
        sys.exit(f"bench/bootstorm.py: {reason}")
    if not UNDIONLY.exists():
        sys.exit(f"bench/bootstorm.py needs {UNDIONLY} (apt-get install ipxe)")
    if max(args.machines) > 1000:
        sys.exit("--machines: at most 1000 (the pool is a /22)")
    glued = (peer_available("bench/bootstorm.py", "dnsmasq", "dnsmasq-base", args.smoke)
             and peer_available("bench/bootstorm.py", "nginx", "nginx-light", args.smoke))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    with Lab() as lab:
        topo = Topology.build(lab)
        files = make_files(lab, int(args.kernel_mib * (1 << 20)), int(args.initrd_mib * (1 << 20)))
        chain = Chain(topo.cli_if, files.boot.stat().st_size,
                      files.kernel.stat().st_size + files.initrd.stat().st_size, args.blksize)
        stacks: list[Stack] = [Imageserver(topo, files, args.tftp_max, args.event_loop)]
        if glued:
            stacks.append(Glued(topo, files, args.tftp_max, args.nginx_workers))
        print(f"boot storm: N machines powered on within 1 s walk DHCP (ROM) -> TFTP {files.boot.name} "
              f"({chain.boot_size} B, lock-step blksize {args.blksize}) -> DHCP (iPXE) -> HTTP script -> kernel "
              f"{args.kernel_mib:g} MiB + initrd {args.initrd_mib:g} MiB; {args.rounds} round(s) per N and stack",
              flush=True)
        rounds: list[Round] = []
        rng = random.Random(args.seed)
        for n in args.machines:
            macs = [f"02:b5:{rng.randrange(256):02x}:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"
                    for i in range(n)]
            power_on = [rng.random() for _ in range(n)]
            for _ in range(args.rounds):
                for stack in stacks:
                    rounds.append(run_round(stack, topo, chain, macs, power_on, args.profile))
                    print(f"  N={n} {stack.name}: last initrd {rounds[-1].storm.last_initrd():.2f} s, "
                          f"{len(rounds[-1].storm.failed)} failed", flush=True)
                    for m in rounds[-1].storm.failed[:3]:
                        print(f"      FAILED {m.mac}: {m.error}", flush=True)
        summarize(rounds, args.machines, [stack.name for stack in stacks], args.smoke)
    ours_failed = sum(len(r.storm.failed) for r in rounds if r.stack == Imageserver.name)
    if ours_failed:
        print(f"bench/bootstorm.py: {ours_failed} machine(s) failed against the imageserver")
        return 1
    return 0


def run_round(stack: Stack, topo: Topology, chain: Chain, macs: Sequence[str], power_on: Sequence[float],
              profile: str | None = None) -> Round:
    stack.start(macs)
    spy = None
    busy: list[float] = []
    done = threading.Event()
    try:
        if profile:
            if isinstance(stack, Imageserver):
                spy = start_profile(stack.pid(), f"{profile}.{len(macs)}")
            threading.Thread(target=sample_cpu, args=(stack, busy, done), daemon=True).start()
        cpu = stack.cpu_seconds()
        with inside(topo.cli), asyncio.Runner(loop_factory=client_loop()) as runner:
            result = runner.run(storm(chain, macs, power_on))
        server_cpu = stack.cpu_seconds() - cpu
    finally:
        done.set()
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        stack.stop()
    if busy:
        print(f"      {stack.name} CPU per second of the storm (1.0 = one core): "
              f"{' '.join(f'{b:.2f}' for b in busy)}", flush=True)
    return Round(stack.name, len(macs), result, server_cpu)


def sample_cpu(stack: Stack, busy: list[float], done: threading.Event) -> None:
    """The stack's CPU seconds in each second of the storm: whether a server is saturated (one core for a
    single event loop) or waiting."""
    last = stack.cpu_seconds()
    while not done.wait(1.0):
        now = stack.cpu_seconds()
        busy.append(now - last)
        last = now


def start_profile(pid: int, out: str) -> subprocess.Popen[bytes]:
    """py-spy on the daemon while its storm runs: where its CPU goes (samples of the thread holding the GIL;
    collapsed stacks, one line per stack)."""
    tool = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(tool).exists():
        sys.exit("--profile needs py-spy (pip install py-spy)")
    spy = subprocess.Popen([tool, "record", "--format", "raw", "--gil", "-r", "200", "-o", out, "-p", str(pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the first machine powers on
    print(f"      profile of the imageserver: {out}", flush=True)
    return spy


def client_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop for the machines' side when it is installed: the less the harness costs, the more the storm
    measures the servers (both stacks see the same client)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def summarize(rounds: list[Round], sizes: Sequence[int], stacks: Sequence[str], smoke: bool) -> None:
    def of(stack: str, n: int) -> list[Round]:
        return [r for r in rounds if r.stack == stack and r.n == n]

    print()
    print(HEADER)
    for n in sizes:
        for stack in stacks:
            print(table_line(n, stack, of(stack, n)))
    print("last initrd: seconds from the first power-on until the last machine has its initrd (median round); "
          "stages: p50/p99 in ms over the machines that finished; retries: every DHCP/TFTP resend, DHCP restart "
          "after a NAK and HTTP re-attempt; CPU: seconds per storm of the stack's processes and of this client")
    if Glued.name not in stacks:
        return
    for n in sizes:
        ours = statistics.median(r.storm.last_initrd() for r in of(Imageserver.name, n))
        theirs = statistics.median(r.storm.last_initrd() for r in of(Glued.name, n))
        failed = sum(len(r.storm.failed) for r in of(Imageserver.name, n))
        verdict = "" if smoke else ("  (target >= 1.0x, no failed machine: "
                                    f"{'met' if theirs / ours >= 1.0 and not failed else 'NOT met'})")
        print(f"ratio N={n}: dnsmasq+nginx {theirs:.2f} s / imageserver {ours:.2f} s = {theirs / ours:.2f}x{verdict}")


if __name__ == "__main__":
    sys.exit(main())
