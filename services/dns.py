"""The DNS server: UDP and TCP listeners around `protocols.dns.answer`, and a UDP forwarder for other names.

Every query asks the zone source for the current zone; with `StoreZone` that is one PRAGMA on the
store's reader connection, and a rebuild only after a commit, so a new host resolves on the very next
query. Forwarded queries go out under ids of our own from one socket; a bounded table of pending
queries tries each upstream once, in order, and gives the client SERVFAIL when none answered in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from protocols.dns import (
    DnsError,
    Drop,
    Forward,
    Reply,
    Transport,
    Zone,
    ZoneSettings,
    answer,
    cache_key,
    cacheable,
    make_zone,
    reply_from_cache,
    upstream_reply,
    with_id,
)
from protocols.dns_fast import FastPath
from services.base import ServiceError, ServiceStatus
from state.db import StoreFailure
from state.eventlog import EventLog
from state.names import NameIndex

log = EventLog("imageserver.dns")

Upstream = tuple[str, int]
_RCODE_KEYS = {code: f"rcode_{name}" for code, name in
               {0: "noerror", 1: "formerr", 2: "servfail", 3: "nxdomain", 4: "notimp", 5: "refused",
                16: "badvers"}.items()}
_QUERIES = {"udp": "queries_udp", "tcp": "queries_tcp"}


class StoreZone:
    """The zone as the store has it now: `zone()` per query; a new Zone only when the names or settings changed."""

    def __init__(self, index: NameIndex, settings: ZoneSettings, clock: Callable[[], float] = time.time) -> None:
        self._index = index
        self._settings = settings
        self._clock = clock
        self._built_from: tuple[int, ZoneSettings] | None = None
        self._zone: Zone | None = None
        self._refused: frozenset[object] = frozenset()  # refusals already logged (those still in force)
        self._refused_order: tuple[object, ...] = ()
        self.errors = 0

    def configure(self, settings: ZoneSettings) -> None:
        self._settings = settings  # the next query builds the zone anew (the cache key includes the settings)

    def __call__(self) -> Zone:
        try:
            snap = self._index.snapshot(self._clock())
        except StoreFailure as e:
            # A store hiccup (locked, I/O) must not take DNS down: keep answering from the last zone.
            self.errors += 1
            log.error("zone-read-failed", error=str(e))
            if self._zone is None:
                self._zone = make_zone(self._settings, (), 0)
            return self._zone
        if snap.refused != tuple(self._refused_order):
            self._log_refused(snap.refused)
        # Same serial, same names: the zone object (and the server's answer cache) stays.
        key = (snap.serial, self._settings)
        if self._zone is None or self._built_from != key:
            self._zone = make_zone(self._settings, ((e.name, e.address) for e in snap.entries), snap.serial)
            self._built_from = key
            if self._zone.skipped:
                log.info("zone-built", names=self._zone.names, serial=self._zone.serial,
                         skipped=",".join(self._zone.skipped[:10]))
        return self._zone

    def _log_refused(self, refused: tuple[Any, ...]) -> None:
        # One line per claim when it is first refused, not per rebuild: a claim stays refused while its lease lasts.
        for r in refused:
            if r not in self._refused:
                log.warning("dns-name-refused", name=r.name, mac=r.mac, source=r.source, reason=r.reason)
        self._refused = frozenset(refused)
        self._refused_order = refused


@dataclass(slots=True)
class _Pending:
    fwd: Forward
    respond: Callable[[bytes], None]
    sent_id: int
    upstream: int  # index into the upstream list of the attempt in flight
    timer: asyncio.TimerHandle | None = None


class _UdpListener:
    """The query socket, read in batches: one wake-up drains up to BATCH datagrams, because a loop turn
    per packet costs as much as answering it from the cache."""

    BATCH = 64

    def __init__(self, server: DnsServer, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.sock = sock
        self.loop = loop
        loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        server, sock = self.server, self.sock
        # The zone is read once per wake-up, not per datagram (a PRAGMA each): a change committed during the
        # batch shows from the next wake-up, before any client told of the commit by this loop can ask.
        try:
            zone: Zone | None = server.current_zone()
        except Exception:  # handle() logs it per query, as when the zone is read there
            zone = None
        # The common shapes (and every repeat) are answered inline and counted once per wake-up: per query
        # that is a recvfrom, a dict lookup or the raw-bytes answer, and a sendto.
        fast = server._fast.udp if zone is not None else None
        forwarding = server._cache_forwarding
        recvfrom, sendto = sock.recvfrom, sock.sendto
        answered, hits, nxdomain, dropped, errors = 0, 0, 0, 0, 0
        try:
            for _ in range(self.BATCH):
                try:
                    data, addr = recvfrom(65535)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:  # an ICMP error queued on the socket (a client went away): count it, go on
                    errors += 1
                    continue
                got = None
                if fast is not None and zone is not None:
                    try:
                        got = fast(data, zone, forwarding)
                    except Exception:  # a bug of ours: handle() takes the query the long way and logs
                        got = None
                if got is None:
                    server.handle(data, "udp", functools.partial(self.send, addr=addr), zone=zone)
                    continue
                answered += 1
                hits += got[2]
                if got[1]:
                    nxdomain += 1  # the fast path answers NOERROR or NXDOMAIN
                try:
                    sendto(got[0], addr)
                except (BlockingIOError, InterruptedError):
                    dropped += 1  # the send buffer is full: drop, as any UDP server under overload does
                except OSError:
                    errors += 1
        finally:
            if answered or errors:
                counters = server.counters
                for key, value in (("queries_udp", answered), ("cache_hits", hits),
                                   ("rcode_noerror", answered - nxdomain), ("rcode_nxdomain", nxdomain),
                                   ("udp_send_dropped", dropped), ("udp_errors", errors)):
                    if value:
                        counters[key] += value

    def send(self, reply: bytes, addr: tuple[str, int]) -> None:
        try:
            self.sock.sendto(reply, addr)
        except (BlockingIOError, InterruptedError):
            # The send buffer is full: drop, as any UDP server under overload does; the client retries.
            self.server.counters["udp_send_dropped"] += 1
        except OSError:
            self.server.counters["udp_errors"] += 1

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class _UpstreamSocket(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server._upstream_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.server.counters["upstream_errors"] += 1


class _TcpConnection:
    """One TCP client: answers are written framed, forwarded ones whenever they arrive."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.outstanding = 0  # forwarded queries whose answers are still to come
        self.settled = asyncio.Event()
        self.settled.set()

    def send(self, reply: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(struct.pack("!H", len(reply)) + reply)

    def send_later(self, reply: bytes) -> None:
        self.send(reply)
        self.outstanding -= 1
        if self.outstanding == 0:
            self.settled.set()

    def deferred(self) -> None:
        self.outstanding += 1
        self.settled.clear()


class DnsServer:
    """Authoritative for the appliance's names, forwarding the rest; `port=0` picks one port free for both
    UDP and TCP (tests), available as `.port` once started."""

    name = "dns"

    def __init__(self, *, host: str, port: int, zone: Callable[[], Zone], upstreams: Sequence[Upstream] = (),
                 forward_timeout: float = 2.0, max_pending: int = 1024, tcp_idle: float = 10.0,
                 max_tcp_connections: int = 64, cache_size: int = 10000) -> None:
        self.host = host
        self.port = port
        self.zone = zone
        self.upstreams: tuple[Upstream, ...] = tuple(upstreams)
        self.forward_timeout = forward_timeout
        self.max_pending = min(max_pending, 60000)  # ids are 16 bits; leave room to find a free one
        self.tcp_idle = tcp_idle
        self.max_tcp_connections = max_tcp_connections
        self._status = ServiceStatus()
        self.counters = self._status.counters
        self._udp: _UdpListener | None = None
        self._tcp: asyncio.Server | None = None
        self._up: asyncio.DatagramTransport | None = None
        self._pending: dict[int, _Pending] = {}
        self._tcp_tasks: set[asyncio.Task[None]] = set()
        self._tcp_writers: set[asyncio.StreamWriter] = set()
        # Answers already computed for the current zone: cache_key(query) -> (reply, rcode, truncated).
        # Emptied whenever the zone object changes; cache_size=0 turns it off.
        self.cache_size = cache_size
        self._cache: dict[bytes, tuple[bytes, int, bool]] = {}
        self._cache_zone: Zone | None = None
        self._cache_forwarding = False
        self._fast = FastPath(cache_size)

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self._bind(loop)
            self._up, _ = await loop.create_datagram_endpoint(
                lambda: _UpstreamSocket(self), local_addr=("0.0.0.0", 0), family=socket.AF_INET)
        except OSError as e:
            await self.stop()
            self._status.state, self._status.error = "failed", str(e)
            raise ServiceError(f"dns: cannot listen on {self.host}:{self.port}: {e.strerror or e}") from None
        self._status.state = "running"
        self._status.listen = [f"udp:{self.host}:{self.port}", f"tcp:{self.host}:{self.port}"]

    async def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        # With port 0 the kernel picks the UDP port; TCP must get the same one, so retry on a clash.
        attempts = 20 if self.port == 0 else 1
        for attempt in range(attempts):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                with contextlib.suppress(OSError):  # a bigger buffer for bursts of queries is nice to have
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                sock.bind((self.host, self.port))
                port = int(sock.getsockname()[1])
                self._tcp = await asyncio.start_server(self._tcp_client, self.host, port, family=socket.AF_INET,
                                                       reuse_address=True, backlog=128)
            except OSError:
                sock.close()
                if attempt == attempts - 1:
                    raise
                continue
            self._udp, self.port = _UdpListener(self, sock, loop), port
            return

    async def stop(self) -> None:
        if self._tcp is not None:
            self._tcp.close()
        for w in list(self._tcp_writers):
            w.close()
        for task in list(self._tcp_tasks):
            task.cancel()
        if self._tcp_tasks:
            await asyncio.gather(*self._tcp_tasks, return_exceptions=True)
        if self._tcp is not None:
            await self._tcp.wait_closed()
            self._tcp = None
        for p in self._pending.values():
            if p.timer is not None:
                p.timer.cancel()
        self._pending.clear()
        if self._udp is not None:
            self._udp.close()
        if self._up is not None:
            self._up.close()
        self._udp = self._up = None
        self._status.state = "stopped"

    def reconfigure(self, upstreams: Sequence[Upstream], forward_timeout: float | None = None) -> None:
        """Take new upstreams live; queries already in flight finish against the old list (or time out)."""
        self.upstreams = tuple(upstreams)
        if forward_timeout is not None:
            self.forward_timeout = forward_timeout

    def status(self) -> dict[str, Any]:
        out = self._status.as_dict()
        out["pending_forwards"] = len(self._pending)
        out["tcp_connections_open"] = len(self._tcp_writers)
        out["upstreams"] = [f"{h}:{p}" for h, p in self.upstreams]
        try:
            zone = self.zone()
            out["zone"] = {"names": zone.names, "serial": zone.serial, "skipped": len(zone.skipped)}
        except Exception as e:  # status must never fail because the zone cannot be read right now
            out["zone"] = {"error": str(e)}
        return out

    # -- one query, whatever the transport --------------------------------------------------------------

    def current_zone(self) -> Zone:
        """The zone to answer from now (the answer cache is emptied when it or the forwarding changed)."""
        zone = self.zone()
        forwarding = bool(self.upstreams)
        if zone is not self._cache_zone or forwarding != self._cache_forwarding:
            self._cache.clear()
            self._cache_zone, self._cache_forwarding = zone, forwarding
        return zone

    def handle(self, data: bytes, transport: Transport, respond: Callable[[bytes], None],
               respond_later: Callable[[bytes], None] | None = None, zone: Zone | None = None) -> bool:
        """Answer one message (over UDP, what `FastPath.udp` did not take: the listener asks it first).
        Returns True when the answer comes later (forwarded): then `respond_later`
        (or `respond`) is called exactly once, from another loop callback. `zone`: what `current_zone()`
        returned for a batch of messages that all arrived before it was asked (else it is asked here)."""
        self.counters[_QUERIES[transport]] += 1
        try:
            if zone is None:
                zone = self.current_zone()
            forwarding = self._cache_forwarding
            # A repeated question (up to letter case) costs a dict lookup instead of a parse and a pack.
            keyed = cache_key(data, transport) if self.cache_size else None
            if keyed is not None:
                hit = self._cache.get(keyed[0])
                if hit is not None:
                    self.counters["cache_hits"] += 1
                    self._count_reply(hit[1], hit[2])
                    respond(reply_from_cache(data, keyed[1], hit[0]))
                    return False
            # The common shapes (A/AAAA/PTR in our zones) from the raw bytes; dnslib for everything else.
            decision = (self._fast.answer(data, zone, transport=transport, forwarding=forwarding)
                        or answer(data, zone, transport=transport, forwarding=forwarding))
        except Exception:  # a bug of ours, never a bad packet (answer() does not raise on input): log, go on
            self.counters["internal_errors"] += 1
            log.exception("query-failed", transport=transport, bytes=len(data))
            return False
        if isinstance(decision, Reply):
            if keyed is not None and cacheable(data, keyed[1], decision.data):
                if len(self._cache) >= self.cache_size:
                    self._cache.clear()  # crude but O(1) amortised: a flood of unique names cannot grow memory
                self._cache[keyed[0]] = (decision.data, decision.rcode, decision.truncated)
            self._count_reply(decision.rcode, decision.truncated)
            respond(decision.data)
        elif isinstance(decision, Forward):
            return self._forward(decision, respond, respond_later or respond)
        elif isinstance(decision, Drop):
            self.counters["dropped"] += 1
        return False

    def _count_reply(self, rcode: int, truncated: bool) -> None:
        self.counters[_RCODE_KEYS.get(rcode) or f"rcode_{rcode}"] += 1
        if truncated:
            self.counters["truncated"] += 1

    # -- forwarding -----------------------------------------------------------------------------------

    def _forward(self, fwd: Forward, respond: Callable[[bytes], None], respond_later: Callable[[bytes], None]) -> bool:
        if self._up is None or not self.upstreams or len(self._pending) >= self.max_pending:
            self.counters["forward_table_full" if self.upstreams else "forward_unavailable"] += 1
            self.counters["rcode_servfail"] += 1
            respond(fwd.servfail)
            return False
        sent_id = secrets.randbelow(0x10000)  # unpredictable ids make spoofed upstream replies hard to land
        while sent_id in self._pending:
            sent_id = secrets.randbelow(0x10000)
        pending = _Pending(fwd=fwd, respond=respond_later, sent_id=sent_id, upstream=0)
        self._pending[sent_id] = pending
        self.counters["forwarded"] += 1
        self._send_upstream(pending)
        return True

    def _send_upstream(self, p: _Pending) -> None:
        assert self._up is not None
        loop = asyncio.get_running_loop()
        self._up.sendto(with_id(p.fwd.query, p.sent_id), self.upstreams[p.upstream])
        p.timer = loop.call_later(self.forward_timeout, self._upstream_timeout, p)

    def _upstream_timeout(self, p: _Pending) -> None:
        if self._pending.get(p.sent_id) is not p:
            return
        self.counters["upstream_timeouts"] += 1
        if p.upstream + 1 < len(self.upstreams) and self._up is not None:
            p.upstream += 1
            self._send_upstream(p)
            return
        del self._pending[p.sent_id]
        self.counters["forward_failed"] += 1
        self.counters["rcode_servfail"] += 1
        p.respond(p.fwd.servfail)

    def _upstream_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 2:
            self.counters["upstream_bad_replies"] += 1
            return
        (sent_id,) = struct.unpack_from("!H", data)
        p = self._pending.get(sent_id)
        # Only the upstream we asked last may answer (a late reply from an earlier one is as good, but
        # accepting any source would let anyone on the network answer for it).
        if p is None or p.upstream >= len(self.upstreams) or (addr[0], addr[1]) not in self.upstreams[: p.upstream + 1]:
            self.counters["upstream_bad_replies"] += 1
            return
        try:
            reply = upstream_reply(data, p.fwd, sent_id)
        except DnsError:
            self.counters["upstream_bad_replies"] += 1
            return
        del self._pending[sent_id]
        if p.timer is not None:
            p.timer.cancel()
        self.counters["forward_replies"] += 1
        p.respond(reply)

    # -- TCP: 2-byte length framing, many queries per connection --------------------------------------------

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._tcp_writers) >= self.max_tcp_connections or task is None:
            self.counters["tcp_refused"] += 1
            writer.close()
            return
        self.counters["tcp_connections"] += 1
        self._tcp_writers.add(writer)
        self._tcp_tasks.add(task)
        conn = _TcpConnection(writer)
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readexactly(2), self.tcp_idle)
                    (length,) = struct.unpack("!H", head)
                    data = await asyncio.wait_for(reader.readexactly(length), self.tcp_idle)
                except TimeoutError:
                    self.counters["tcp_idle_closed"] += 1
                    break
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                # A forwarded answer may overtake the ones behind it (RFC 7766 allows out-of-order replies).
                if self.handle(data, "tcp", conn.send, conn.send_later):
                    conn.deferred()
                # A client that sends but never reads must not hold a connection slot forever.
                await asyncio.wait_for(writer.drain(), self.tcp_idle)
            # The client is done sending; it still gets the answers that are on their way.
            if conn.outstanding:
                await asyncio.wait_for(conn.settled.wait(), self.forward_timeout * (len(self.upstreams) + 1))
                await asyncio.wait_for(writer.drain(), self.tcp_idle)
        except TimeoutError:
            self.counters["tcp_stalled_closed"] += 1  # the client stopped reading its answers
        except ConnectionError:
            pass
        finally:
            self._tcp_writers.discard(writer)
            self._tcp_tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
