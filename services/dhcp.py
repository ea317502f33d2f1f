"""The DHCP server: UDP sockets around protocols.dhcp.respond() and the lease model.

Per packet: decode -> respond (the pure RFC 2131 decision; the lease model is its book) -> encode ->
send. An ACK that binds a lease is sent only once that lease is durable: the model has already
queued its write with the journal, and the ACKs of one loop turn are handed, as one list, to the
journal's `when_durable` callback, which sends them once the batch holding their leases has committed
— so all ACKs produced while a commit is in flight share the next fsync (group commit), the receive
path never waits for the disk, and no task or future is made per ACK.

Sockets are read directly (add_reader + recvmsg) rather than through a DatagramProtocol so that
IP_PKTINFO tells which interface and local address a broadcast arrived on: the local address picks
the subnet of an unrelayed client, and a broadcast reply leaves through the interface the request
came in on (a namespace or appliance without a default route cannot send to 255.255.255.255
otherwise). With `[appliance] interface` set, SO_BINDTODEVICE confines the server to that interface.
A malformed packet is counted and logged at debug level; nothing a client sends stops the server.

Store full (ENOSPC) or failing: a commit that fails withholds its ACKs (logged, counted as
acks_dropped_commit_failed; /api/v1/status says store.ok=false), so a new machine gets no address.
A renewal whose binding is already on disk (same MAC and address) is still ACKed, from the row as
stored: for the time that row has left, never longer (a reservation as is). An ACK thus never promises
more than a restart would know; a client keeps its address as long as its durable lease runs.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import uuid
from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv4Address
from typing import Any

from protocols.dhcp import options as o
from protocols.dhcp.codec import BOOTREQUEST, DhcpError, DhcpPacket, decode
from protocols.dhcp.options import MessageType
from protocols.dhcp.relay import relay_problem
from protocols.dhcp.reply import (
    BROADCAST,
    PXE_BOOT_SERVER_PORT,
    Reply,
    ServerSettings,
    Subnet,
    respond,
    select_subnet,
)
from services.base import ServiceError, ServiceStatus
from services.dhcp_probe import ConflictProbe
from state.eventlog import EventLog
from state.lease_validators import client_hostname
from state.leases import LeaseModel
from state.sightings import MachineLog

log = EventLog("imageserver.dhcp")

_Outgoing = tuple[bytes, IPv4Address, int, int | None, int, str]  # _send's arguments
_Held = tuple[Reply, _Outgoing]  # an ACK waiting for its lease's commit

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux's value; the socket module has it from Python 3.12
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux; root may exceed net.core.rmem_max
_PKTINFO = struct.Struct("@i4s4s")  # struct in_pktinfo: ifindex, spec_dst, addr
_ANCILLARY = socket.CMSG_SPACE(_PKTINFO.size)
# Datagrams read per wakeup before the loop runs anything else. Small, because a finished commit only
# releases its ACKs after a few loop turns: with 256 a backlog held them for tens of ms, and the larger
# bursts that followed overflowed clients' receive buffers (perfdhcp's RcvbufErrors).
_READS_PER_WAKEUP = 32
_PROBE_ATTEMPTS = 3  # conflicting addresses skipped per DISCOVER before staying silent
_ZERO = IPv4Address(0)
_IN_COUNTERS = {t: f"in_{name}" for t, name in o.MESSAGE_TYPE_NAMES.items()}  # counter keys, built once
_OUT_COUNTERS = {t: f"out_{name}" for t, name in o.MESSAGE_TYPE_NAMES.items()}
_TEXTS_KEPT = 4096  # addresses whose text form is remembered (relays, clients answered by unicast)


class DhcpServer:
    """Authoritative or ProxyDHCP server; see the module docstring for the packet path."""

    name = "dhcp"

    def __init__(self, *, settings: ServerSettings, leases: LeaseModel,
                 when_durable: Callable[[Callable[[BaseException | None], None]], None],
                 machines: MachineLog | None = None, port: int = 67, interface: str | None = None,
                 bind_address: str = "0.0.0.0", conflict_probe: bool = False, probe_timeout: float = 0.3,
                 clock: Callable[[], float], monotonic: Callable[[], float],
                 may_boot: Callable[[str], bool] | None = None,
                 durable_binding: Callable[[str], tuple[IPv4Address, float | None] | None] | None = None) -> None:
        self.settings = settings
        self.leases = leases
        self.machines = machines
        self.port = port
        self.interface = interface
        self.bind_address = bind_address
        # journal.when_durable: calls back once everything queued so far is committed (or failed).
        self._when_durable = when_durable
        # Discovery policy "ignore": whether a reply to this MAC may carry boot options (None: always).
        self.may_boot = may_boot
        # What the store holds for a MAC (address, lease end; None for a reservation): when a commit
        # fails (state dir full), a renewal is still answered from it, never for longer than it says.
        self._durable_binding = durable_binding
        # Another DHCP server on the segment (the appliance probes at start): what was found, and whether
        # pool addresses are withheld because of it (authoritative mode without [dhcp] allow_rogue).
        self.other_servers: dict[str, Any] = {"probed": False, "servers": [], "error": None}
        self.refuse_pool = False
        self.ignore_macs: set[str] = set()  # our own probe's DISCOVER is not a machine
        self._clock = clock
        self._monotonic = monotonic
        self._probe_enabled = conflict_probe
        self._probe = ConflictProbe(interface=interface, timeout=probe_timeout, monotonic=monotonic)
        self._sockets: dict[int, socket.socket] = {}  # by port
        self._pending: list[_Held] = []  # ACKs of this loop turn, their leases queued but not yet durable
        self._held = 0  # ACKs waiting for their commit (pending and handed to the journal)
        self._tasks: set[asyncio.Task[None]] = set()
        self._texts: dict[int, str] = {}  # see _text
        self._sources: dict[str, IPv4Address] = {}  # see _source
        self._arrivals: dict[bytes, tuple[int | None, IPv4Address | None, bool]] = {}  # see _arrival
        self._status = ServiceStatus()

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        ports = [self.port]
        if self.settings.mode == "proxy":
            ports.append(PXE_BOOT_SERVER_PORT)  # PXE boot server requests after a ProxyDHCP offer
        loop = asyncio.get_running_loop()
        try:
            for port in ports:
                sock = self._open(port)
                self._sockets[port] = sock
                loop.add_reader(sock.fileno(), self._readable, sock, port)
        except ServiceError:
            await self.stop()
            self._status.state = "failed"
            raise
        if self._probe_enabled and self.settings.mode == "authoritative":
            self._probe.open()
        self._status.state = "running"
        self._status.listen = [f"udp/{self.bind_address}:{p}" + (f"%{self.interface}" if self.interface else "")
                               for p in ports]

    def _open(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            _big_receive_buffer(sock)
            if self.interface:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode())
            sock.bind((self.bind_address, port))
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            where = f"{self.bind_address}:{port}" + (f" on {self.interface}" if self.interface else "")
            raise ServiceError(f"dhcp: cannot listen on udp {where}: {e.strerror or e}") from None
        return sock

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._sockets.values():
            loop.remove_reader(sock.fileno())
        self._probe.close()
        for task in list(self._tasks):
            task.cancel()
        # Pending ACKs are owed to clients whose leases are being committed: let them go out.
        self._hand_over()
        deadline = self._monotonic() + 5
        while self._held and self._monotonic() < deadline:
            await asyncio.sleep(0.005)
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
        if self._status.state == "running":
            self._status.state = "stopped"

    def reconfigure(self, settings: ServerSettings, *, conflict_probe: bool | None = None) -> None:
        """SIGHUP: new subnets, pools, options and boot files apply to the next packet; leases stay."""
        if settings.mode != self.settings.mode:
            log.warning("reconfigure-partial", reason="dhcp.mode changes need a restart", keeping=self.settings.mode)
            settings = replace(settings, mode=self.settings.mode)
        self.leases.set_subnets(settings.subnets)
        self.leases.offer_hold = settings.offer_hold
        self.settings = settings
        if conflict_probe is not None and conflict_probe != self._probe_enabled:
            self._probe_enabled = conflict_probe
            if conflict_probe and self._sockets and settings.mode == "authoritative":
                self._probe.open()
            elif not conflict_probe:
                self._probe.close()

    def status(self) -> dict[str, Any]:
        out = self._status.as_dict()
        out["mode"] = self.settings.mode
        out["subnets"] = [str(s.network) for s in self.settings.subnets]
        out["leases"] = self.leases.stats()
        out["other_servers"] = {**self.other_servers, "refusing_pool": self.refuse_pool}
        out["pending_acks"] = self._held
        out["conflict_probe"] = {"enabled": self._probe.available, "probes": self._probe.probes,
                                 "conflicts": self._probe.conflicts}
        return out

    # ---------------------------------------------------------------- receive

    def _readable(self, sock: socket.socket, port: int) -> None:
        for _ in range(_READS_PER_WAKEUP):
            try:
                data, ancdata, _flags, peer = sock.recvmsg(4096, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self._status.counters["receive_errors"] += 1
                log.debug("receive-failed", error=str(e))
                return
            ifindex, local, broadcast = self._arrival(ancdata)
            try:
                self.handle(data, port, ifindex, local, peer=peer, broadcast=broadcast)
            except Exception:  # a bug in one packet's path must not take the server down
                self._status.counters["errors"] += 1
                log.exception("packet-failed")

    def handle(self, data: bytes, port: int = 67, ifindex: int | None = None,
               local: IPv4Address | None = None, *, peer: tuple[str, int] | None = None,
               broadcast: bool = False) -> None:
        """One datagram; `peer` is its (source address, port) from the socket (None: a direct call)."""
        counters = self._status.counters
        counters["received"] += 1
        try:
            request = decode(data)
            kind = request.message_type
        except DhcpError as e:
            counters["malformed"] += 1
            log.debug("malformed", bytes=len(data), error=str(e))
            return
        if request.op != BOOTREQUEST or request.mac in self.ignore_macs:
            counters["ignored"] += 1
            return
        counters[_IN_COUNTERS.get(kind, "in_bootp") if kind is not None else "in_bootp"] += 1
        # The source address matters to relayed requests and RELEASEs only: parsed for those alone.
        source = self._source(peer) if request.giaddr != _ZERO or kind == MessageType.RELEASE else None
        if request.giaddr != _ZERO and peer is not None:
            problem = relay_problem(request, source or _ZERO, peer[1], broadcast=broadcast,
                                    trusted=self.settings.trusted_relays)
            if problem is not None:
                # A client on this link posing as a relay to be served from a relay subnet: dropped.
                counters["forged_relay"] += 1
                log.debug("forged-relay", mac=request.mac, giaddr=request.giaddr, source=f"{peer[0]}:{peer[1]}",
                          reason=problem)
                return
        now = self._clock()
        if (self.refuse_pool and kind in (MessageType.DISCOVER, MessageType.REQUEST)
                and self.leases.current(request.mac) is None):
            # Two servers handing out addresses on one segment fight over every client: with another one
            # found, only machines this server already knows (a reservation or a lease) are answered.
            counters["refused_other_server"] += 1
            if self.machines is not None and request.hlen:
                self._record_machine(request, local, now)
            return
        # Only for the info line about a new binding: skipped, with its lookups, when info is not logged.
        log_binding = kind == MessageType.REQUEST and log.isEnabledFor(logging.INFO)
        before = self.leases.current(request.mac) if log_binding else None
        try:
            reply = respond(request, self.leases, self.settings, now, local_address=local, arrived_port=port,
                            offer_boot=self.may_boot is None or self.may_boot(request.mac), source=source)
        except DhcpError as e:
            counters["malformed"] += 1
            log.debug("malformed", mac=request.mac, error=str(e))
            return
        if log_binding and reply is not None:
            self._log_binding(request, reply, before, now)
        if self.machines is not None and request.hlen:
            self._record_machine(request, local, now)
        if reply is None:
            counters["no_reply"] += 1
            return
        if reply.packet.options.get(o.OptionCode.VENDOR_CLASS) == b"HTTPClient":
            counters["http_boot_replies"] += 1  # UEFI HTTP boot answered: the firmware fetches a URL, not TFTP
        if (self._probe.available and reply.packet.message_type == MessageType.OFFER
                and self._should_probe(request, reply.packet.yiaddr)):
            task = asyncio.get_running_loop().create_task(self._probe_then_offer(request, reply, port, ifindex, local))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        self._dispatch(reply, port, ifindex)

    def _log_binding(self, request: DhcpPacket, reply: Reply, before: Any, now: float) -> None:
        """One info line per machine that gets a (new) address or is refused one; renewals only at debug,
        so a busy segment's renew traffic does not flood the journal."""
        packet = reply.packet
        if packet.message_type == MessageType.NAK:
            log.info("dhcp-nak", mac=request.mac, requested=o.requested_ip(request) or request.ciaddr)
            return
        if packet.message_type != MessageType.ACK or packet.yiaddr == _ZERO:
            return
        after = self.leases.current(request.mac)
        hostname = getattr(after, "hostname", None) or "-"
        renewed = before is not None and before.ip == packet.yiaddr and (before.expires is None or before.expires > now)
        if renewed:
            log.debug("dhcp-renew", mac=request.mac, ip=packet.yiaddr, hostname=hostname)
        else:
            log.info("dhcp-ack", mac=request.mac, ip=packet.yiaddr, hostname=hostname)

    def _should_probe(self, request: DhcpPacket, ip: IPv4Address) -> bool:
        current = self.leases.current(request.mac)
        if current is not None and current.ip == ip:
            return False  # its own address: if it answers, it is this very machine
        return self._probe.wanted(ip)

    async def _probe_then_offer(self, request: DhcpPacket, reply: Reply, port: int, ifindex: int | None,
                                local: IPv4Address | None) -> None:
        for _ in range(_PROBE_ATTEMPTS):
            ip = reply.packet.yiaddr
            if not await self._probe.in_use(ip):
                self._dispatch(reply, port, ifindex)
                return
            self._status.counters["probe_conflicts"] += 1
            log.warning("address-in-use", ip=ip, mac=request.mac, action="quarantined")
            now = self._clock()
            self.leases.quarantine(ip, now)
            try:
                again = respond(request, self.leases, self.settings, now, local_address=local, arrived_port=port,
                                offer_boot=self.may_boot is None or self.may_boot(request.mac))
            except DhcpError:
                return
            if again is None or again.packet.message_type != MessageType.OFFER:
                return
            reply = again
            if not self._should_probe(request, reply.packet.yiaddr):
                self._dispatch(reply, port, ifindex)
                return

    def _record_machine(self, request: DhcpPacket, local: IPv4Address | None, now: float) -> None:
        assert self.machines is not None
        subnet = select_subnet(self.settings, request.giaddr, local)
        relay = self._text(request.giaddr) if request.giaddr != _ZERO else None
        self.machines.sighted(request.mac, now, _sighting(request, subnet, relay))

    # ---------------------------------------------------------------- send

    def _dispatch(self, reply: Reply, port: int, ifindex: int | None) -> None:
        """Send a reply from the socket its request arrived on (after the commit, for an ACK)."""
        try:
            data = reply.to_bytes()
        except DhcpError as e:
            self._status.counters["encode_errors"] += 1
            log.warning("encode-failed", error=str(e))
            return
        counter = _OUT_COUNTERS.get(reply.packet.message_type or 0, "out_bootp")
        dest = BROADCAST if reply.broadcast else reply.dest_ip
        item = (data, dest, reply.dest_port, ifindex if reply.broadcast else None, port, counter)
        if not reply.durable:
            self._send(*item)
            return
        if not self._pending:
            # Handed over at the end of this loop turn, after every ACK of the turn has queued its lease:
            # the callback then covers them all (registered earlier, it might fire before a later one's
            # lease is in a batch).
            asyncio.get_running_loop().call_soon(self._hand_over)
        self._pending.append((reply, item))
        self._held += 1

    def _hand_over(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            started = self._monotonic()
            self._when_durable(lambda error: self._release(batch, error, started))

    def _release(self, batch: list[_Held], error: BaseException | None, started: float) -> None:
        """The journal's callback: the batch holding these ACKs' leases has committed (or failed)."""
        counters = self._status.counters
        if error is not None:
            self._held -= len(batch)
            # Not durable, so not promised: a new binding gets no ACK (its client retries). What the
            # store already holds is answered anyway, capped to what it holds.
            served = self._send_what_is_durable(batch)
            counters["acks_dropped_commit_failed"] += len(batch) - served
            # The dhcp-ack lines logged when these were decided may not have left: name the batch.
            withheld = [reply.packet.mac for reply, _ in batch][:10]
            log.error("ack-withheld", reason="commit-failed", count=len(batch) - served, answered_from_store=served,
                      batch=",".join(withheld), error=str(error))
            return
        counters["ack_batches"] += 1  # ACKs per fsync = out_ack / ack_batches
        counters["ack_wait_ms"] += round((self._monotonic() - started) * 1000)
        self._send_slices(batch, 0)

    def _send_slices(self, batch: list[_Held], start: int) -> None:
        # A big batch goes out in slices with receive turns in between: one long burst overflows a busy
        # client's (or relay's) receive buffer and delays the next OFFERs.
        end = min(start + _READS_PER_WAKEUP, len(batch))
        for i in range(start, end):
            self._send(*batch[i][1])
        self._held -= end - start
        if end < len(batch):
            asyncio.get_running_loop().call_soon(self._send_slices, batch, end)

    def _send_what_is_durable(self, batch: list[_Held]) -> int:
        """Store full (or failing): ACK the renewals whose binding is already on disk, for the time left on it.

        The ACK then promises nothing a restart would not know: same MAC, same address, and a lease that
        ends no later than the durable row (a reservation does not end). A new or moved binding, or a row
        that has run out, stays unanswered until a commit succeeds again.
        """
        if self._durable_binding is None:
            return 0
        now = self._clock()
        served = 0
        for reply, item in batch:
            packet = reply.packet
            try:
                held = self._durable_binding(packet.mac)
            except Exception as e:  # the store cannot even be read: answer nothing
                log.error("durable-lookup-failed", error=str(e))
                return served
            if held is None or held[0] != packet.yiaddr:
                continue
            data = item[0]
            if held[1] is not None:
                left = int(held[1] - now)
                if left < 1:
                    continue
                try:
                    data = _with_lease_time(reply, left)
                except DhcpError:
                    continue
            self._send(data, *item[1:])
            self._status.counters["acks_from_store"] += 1
            served += 1
        return served

    def _arrival(self, ancdata: list[tuple[int, int, bytes]]) -> tuple[int | None, IPv4Address | None, bool]:
        """_pktinfo and _broadcast_arrival, remembered per distinct IP_PKTINFO value (one per interface and
        destination kind)."""
        for level, kind, value in ancdata:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                known = self._arrivals.get(value)
                if known is None:
                    if len(self._arrivals) >= _TEXTS_KEPT:
                        self._arrivals.clear()
                    one = [(level, kind, value)]
                    known = self._arrivals[value] = (*_pktinfo(one), _broadcast_arrival(one))
                return known
        return None, None, False

    def _source(self, peer: tuple[str, int] | None) -> IPv4Address | None:
        """The peer's address, parsed once per distinct text: parsing a dotted quad costs more than the
        relay checks it feeds, and a relayed segment's packets all come from the same few relays."""
        if peer is None:
            return None
        text = peer[0]
        known = self._sources.get(text)
        if known is None:
            try:
                known = IPv4Address(text)
            except ValueError:
                return None
            if len(self._sources) >= _TEXTS_KEPT:
                self._sources.clear()
            self._sources[text] = known
        return known

    def _text(self, address: IPv4Address) -> str:
        """str(address), remembered: formatting an address costs more than the rest of a send, and the
        same few (a relay, the broadcast address) come back with every packet."""
        n = int(address)
        text = self._texts.get(n)
        if text is None:
            if len(self._texts) >= _TEXTS_KEPT:
                self._texts.clear()
            text = self._texts[n] = str(address)
        return text

    def _send(self, data: bytes, dest: IPv4Address, port: int, ifindex: int | None, from_port: int,
              counter: str) -> None:
        """Send one reply; `counter` (out_<kind>) counts replies that left (an ACK only after its commit)."""
        sock = self._sockets.get(from_port)
        if sock is None:
            return
        try:
            if ifindex and not self.interface:
                # A broadcast leaves through the interface the request came in on.
                info = _PKTINFO.pack(ifindex, bytes(4), bytes(4))
                sock.sendmsg([data], [(socket.IPPROTO_IP, IP_PKTINFO, info)], 0, (self._text(dest), port))
            else:
                sock.sendto(data, (self._text(dest), port))
            self._status.counters[counter] += 1
        except BlockingIOError:
            self._status.counters["send_dropped"] += 1
        except OSError as e:
            self._status.counters["send_errors"] += 1
            log.debug("send-failed", dest=f"{dest}:{port}", error=str(e))


def _with_lease_time(reply: Reply, seconds: int) -> bytes:
    """The ACK re-encoded with a shorter lease (and T1/T2 to match, where the client asked for them)."""
    opts = dict(reply.packet.options)
    opts[o.OptionCode.LEASE_TIME] = o.pack_u32(seconds)
    if o.OptionCode.RENEWAL_TIME in opts:
        opts[o.OptionCode.RENEWAL_TIME] = o.pack_u32(seconds // 2)
    if o.OptionCode.REBINDING_TIME in opts:
        opts[o.OptionCode.REBINDING_TIME] = o.pack_u32(seconds * 7 // 8)
    return replace(reply, packet=replace(reply.packet, options=opts)).to_bytes()


def _pktinfo(ancdata: list[tuple[int, int, bytes]]) -> tuple[int | None, IPv4Address | None]:
    for level, kind, value in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(value) >= _PKTINFO.size:
            ifindex, spec_dst, _addr = _PKTINFO.unpack_from(value)
            local = IPv4Address(spec_dst)
            return ifindex, (local if local != _ZERO else None)
    return None, None


def _broadcast_arrival(ancdata: list[tuple[int, int, bytes]]) -> bool:
    """Whether the datagram was sent to a broadcast address: IP_PKTINFO's header destination (ipi_addr)
    differs from the local address it was delivered to (ipi_spec_dst) only for broadcast/multicast."""
    for level, kind, value in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(value) >= _PKTINFO.size:
            _ifindex, spec_dst, addr = _PKTINFO.unpack_from(value)
            return addr != spec_dst
    return False


def _big_receive_buffer(sock: socket.socket, size: int = 4 << 20) -> None:
    # A burst of DISCOVERs from a rack powering on must not overflow the default ~200 KiB buffer.
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def _lenient(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except DhcpError:
        return None


def _raw_text(value: bytes | None, limit: int = 200) -> str | None:
    if not value:
        return None
    return value.rstrip(b"\x00").decode("utf-8", "replace")[:limit] or None


def _sighting(request: DhcpPacket, subnet: Subnet | None, relay: str | None) -> tuple[Any, ...]:
    """What a packet tells about its machine (sightings.DETAILS order), read leniently: junk in one
    field keeps the others. Every packet passes here, so an option it lacks costs one lookup."""
    opts = request.options
    arches = _lenient(lambda: o.client_arch(request)) if o.OptionCode.CLIENT_ARCH in opts else None
    uuid_bytes = _lenient(lambda: o.client_uuid(request)) if o.OptionCode.CLIENT_UUID in opts else None
    user = _lenient(lambda: o.user_class_raw(request)) if o.OptionCode.USER_CLASS in opts else None
    hostname = opts.get(o.OptionCode.HOSTNAME)
    return (
        arches[0] if arches else None,
        _raw_text(opts.get(o.OptionCode.VENDOR_CLASS)),
        _raw_text(b",".join(user)) if user else None,
        str(uuid.UUID(bytes=uuid_bytes)) if uuid_bytes else None,
        relay,
        subnet.text if subnet is not None else None,
        client_hostname(_raw_text(hostname)) if hostname else None,
    )
