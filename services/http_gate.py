"""Caps on HTTP connections a stranger can open: in total, per client address, and in time.

aiohttp holds a connection that never sends a byte forever, and accepts until the process runs out of
descriptors (then the TFTP server cannot open files either). The gate sits between the listening socket
and aiohttp: `ConnectionGate.factory(inner)` is the protocol factory handed to loop.create_server, and
each connection's protocol is a thin proxy that decides in connection_made, before aiohttp sees it:

- a client address already holding `max_per_client` connections: the new one is closed at once;
- `max_connections` open: the connection waiting longest for a request is closed to make room (an idle
  flood cannot lock real clients out); if every connection is busy with a request, the new one is closed;
- a connection waiting for a request (fresh, or kept alive after a response) with no byte for
  `idle_timeout` seconds, or with a request begun but not complete after `header_timeout`, is closed by
  a sweep once a second.

- a busy connection whose answer makes no progress (bytes wait in its socket and the peer acknowledges
  none of them) for `write_timeout` seconds is closed by the same sweep: a client that stops reading
  would otherwise hold its slot, its socket and the file being sent for ever, and the full gate refuses
  everyone else (all busy). Until it is closed it counts toward its address's cap like any other.

A connection counts as busy from the moment a handler runs until aiohttp waits for the next request.

HTTPS (the [https] listener) goes through the same gate: a connection is admitted as TCP, then does its TLS
handshake (at most header_timeout seconds), then meets aiohttp; a handshake that stalls holds a slot of its
address and is swept like an idle connection, never a socket outside every cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import socket
import ssl
import struct
import termios
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web

from domain.settings import HttpConfig
from services.ratelimit import LimitedLog
from state.eventlog import EventLog

log = EventLog("imageserver.http")

SWEEP_INTERVAL = 1.0
# A connection streaming a file holds two descriptors: its socket and the open file.
DESCRIPTORS_PER_CONNECTION = 2
# struct tcp_info (linux/tcp.h): tcpi_bytes_acked, a u64 at offset 120 (Linux >= 4.1).
_TCP_INFO_BYTES_ACKED = struct.Struct("=Q")
_TCP_INFO_BYTES_ACKED_OFFSET = 120
_TCP_INFO_LEN = _TCP_INFO_BYTES_ACKED_OFFSET + _TCP_INFO_BYTES_ACKED.size


_HTTP = HttpConfig()


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """[http]'s caps as the gate applies them: held under the process' descriptor limit (`of`)."""

    max_connections: int = _HTTP.max_connections
    max_per_client: int = _HTTP.max_connections_per_client
    idle_timeout: float = _HTTP.idle_timeout
    header_timeout: float = _HTTP.header_timeout
    write_timeout: float = _HTTP.write_timeout
    # The listen queue, which is also how many connections asyncio accepts per wake-up before any of them
    # reaches the gate: with a low descriptor limit, it must be low too.
    backlog: int = 1024

    @property
    def aiohttp_keepalive(self) -> float:
        """aiohttp's own keep-alive timer, a backstop behind the sweep. aiohttp (3.10 on) starts it when a
        connection opens and closes a connection still waiting for its request when it fires, trickling
        header or not: set to the gate's timeouts it raced the sweep, and won, so timeouts went uncounted
        and unlogged. Later than any sweep could be, the gate decides and counts."""
        return max(self.idle_timeout, self.header_timeout) + 3 * SWEEP_INTERVAL

    @classmethod
    def of(cls, http: HttpConfig, nofile: int) -> ConnectionLimits:
        """Half the descriptors at most, counted as a connection may hold them (two while it streams a file):
        the rest are for TFTP transfers, files, the store and rsync. asyncio accepts up to `backlog`
        connections per wake-up before the gate sees them (a burst holds two or three such batches): an
        eighth of the descriptors, so that even a burst never meets EMFILE."""
        budget = nofile // 2
        return cls(max_connections=max(1, min(http.max_connections, budget // DESCRIPTORS_PER_CONNECTION)),
                   max_per_client=http.max_connections_per_client, idle_timeout=http.idle_timeout,
                   header_timeout=http.header_timeout, write_timeout=http.write_timeout,
                   backlog=max(16, min(1024, nofile // 8)))


class _GatedProtocol(asyncio.Protocol):
    """One connection: admitted by the gate, then everything is passed to aiohttp's protocol."""

    __slots__ = ("_early", "_factory", "_gate", "_handshake", "_tls", "first_byte", "handling", "idle_since",
                 "inner", "peer", "requests", "transport", "write_mark", "write_stalled_since")

    def __init__(self, gate: ConnectionGate, factory: Callable[[], asyncio.Protocol],
                 tls: ssl.SSLContext | None = None) -> None:
        self._gate = gate
        self._factory = factory
        self._tls = tls
        self._handshake: asyncio.Task[None] | None = None
        self._early: list[bytes] = []
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.idle_since: float | None = None  # waiting for a request since; None while busy
        self.first_byte: float | None = None  # first byte of the request being waited for
        self.handling = 0  # handlers running (middleware)
        self.requests = 0
        self.write_mark: tuple[int, int] | None = None  # (bytes acked, bytes waiting) at the last sweep
        self.write_stalled_since: float | None = None  # since when the answer has made no progress

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, but not necessarily an asyncio.Transport subclass (uvloop's are its own).
        self.transport = transport = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        self.peer = str(peername[0]) if peername else "?"
        if not self._gate._admit(self):
            transport.abort()  # at once: no aiohttp protocol, no buffers, no timers
            return
        if self._tls is not None:
            # Admitted (and swept) as a TCP connection: a handshake that never ends holds a slot of its
            # address like an idle connection, not a socket outside every cap. Nothing is read until
            # start_tls has put the TLS layer between this protocol and the socket.
            transport.pause_reading()
            self._handshake = asyncio.get_running_loop().create_task(self._start_tls(transport, self._tls))
            return
        self.inner = self._factory()
        self.inner.connection_made(transport)

    async def _start_tls(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        try:
            secure = await loop.start_tls(raw, self, context, server_side=True,
                                          ssl_handshake_timeout=self._gate.limits.header_timeout)
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError, RuntimeError):
            secure = None
        if secure is None or raw.is_closing():
            self._gate._release(self)
            raw.abort()
            return
        self.transport = cast(asyncio.Transport, secure)
        self.inner = self._factory()
        self.inner.connection_made(secure)
        # What the TLS layer decrypted before this task ran again (a TLS 1.3 client sends its request with
        # its Finished message): aiohttp gets it now, in order.
        early, self._early = self._early, []
        for data in early:
            self.data_received(data)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            if self._tls is not None and len(self._early) < 64:  # decrypted before aiohttp's protocol exists
                self._early.append(data)
            return
        if self.first_byte is None:
            self.first_byte = self._gate.clock()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._gate._release(self)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    @property
    def busy(self) -> bool:
        if self.handling:
            return True
        if self.requests == 0:
            return False
        # After a handler returns, aiohttp still sends the response (a FileResponse streams it); it is
        # done when its loop waits for the next message again (RequestHandler._waiter is set).
        return getattr(self.inner, "_waiter", None) is None


class ConnectionGate:
    def __init__(self, limits: ConnectionLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self.counters: Counter[str] = Counter()
        self._open: dict[int, _GatedProtocol] = {}
        self._per_client: Counter[str] = Counter()
        self._log = LimitedLog(log)
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def factory(self, inner: Callable[[], asyncio.Protocol],
                tls: ssl.SSLContext | None = None) -> Callable[[], asyncio.Protocol]:
        """The listening socket's protocol factory; with `tls`, each admitted connection does its TLS
        handshake first (under the gate's caps and timeouts), then meets `inner`."""
        return lambda: _GatedProtocol(self, inner, tls)

    # --- the middleware's view -----------------------------------------------------------------

    @staticmethod
    def connection(transport: Any) -> _GatedProtocol | None:
        proto = transport.get_protocol() if transport is not None else None
        return proto if isinstance(proto, _GatedProtocol) else None

    def handler_started(self, conn: _GatedProtocol) -> None:
        conn.handling += 1
        conn.requests += 1
        conn.idle_since = conn.first_byte = None

    def handler_finished(self, conn: _GatedProtocol) -> None:
        conn.handling -= 1

    # --- admission -----------------------------------------------------------------------------

    def _admit(self, conn: _GatedProtocol) -> bool:
        now = self.clock()
        limits = self.limits
        if self._per_client[conn.peer] >= limits.max_per_client:
            self._refuse("per-client", conn, now)
            return False
        if len(self._open) >= limits.max_connections:
            victim = self._longest_waiting()
            if victim is None:
                self._refuse("all-busy", conn, now)
                return False
            self.counters["connections_evicted"] += 1
            self._log.log("http-evicted", now, logging.INFO,
                          "http-connection-evicted", peer=victim.peer, reason="full", open=len(self._open))
            self._drop(victim)
        self._open[id(conn)] = conn
        self._per_client[conn.peer] += 1
        conn.idle_since = now
        self.counters["connections_accepted"] += 1
        return True

    def _refuse(self, reason: str, conn: _GatedProtocol, now: float) -> None:
        self.counters[f"connections_refused_{reason.replace('-', '_')}"] += 1
        self._log.log(f"http-refused-{reason}", now, logging.WARNING,
                      "http-connection-refused", peer=conn.peer, reason=reason, open=len(self._open),
                      client_open=self._per_client[conn.peer])

    def _longest_waiting(self) -> _GatedProtocol | None:
        best: _GatedProtocol | None = None
        for conn in self._open.values():
            if conn.busy or conn.idle_since is None:
                continue
            if best is None or conn.idle_since < (best.idle_since or 0.0):
                best = conn
        return best

    def _drop(self, conn: _GatedProtocol) -> None:
        self._release(conn)
        if conn.transport is not None:
            conn.transport.abort()

    def _release(self, conn: _GatedProtocol) -> None:
        if self._open.pop(id(conn), None) is None:
            return
        self._per_client[conn.peer] -= 1
        if self._per_client[conn.peer] <= 0:
            del self._per_client[conn.peer]

    # --- timeouts ------------------------------------------------------------------------------

    def sweep(self, now: float) -> int:
        """Close connections that waited too long for a request; returns how many."""
        limits, closed = self.limits, 0
        for conn in list(self._open.values()):
            if conn.busy:
                conn.idle_since = conn.first_byte = None
                if self._write_stalled(conn, now):
                    self.counters["connections_timed_out_write"] += 1
                    self._log.log("http-timeout-write", now, logging.INFO,
                                  "http-connection-timeout", peer=conn.peer, reason="write")
                    # aiohttp's task sending the answer first: a sendfile() waiting on a socket that is
                    # closed under it never returns, and would keep the file open for ever.
                    task = getattr(conn.inner, "_task_handler", None)
                    if isinstance(task, asyncio.Task):
                        task.cancel()
                    _reset_on_close(conn.transport)
                    self._drop(conn)
                    closed += 1
                continue
            conn.write_mark = conn.write_stalled_since = None
            if conn.idle_since is None:  # a response just finished: the wait for the next request starts
                conn.idle_since, conn.first_byte = now, None
                continue
            if conn.first_byte is None:
                expired, reason = now - conn.idle_since >= limits.idle_timeout, "idle"
            else:
                expired, reason = now - max(conn.first_byte, conn.idle_since) >= limits.header_timeout, "header"
            if expired:
                self.counters[f"connections_timed_out_{reason}"] += 1
                self._log.log(f"http-timeout-{reason}", now, logging.INFO,
                              "http-connection-timeout", peer=conn.peer, reason=reason)
                self._drop(conn)
                closed += 1
        self._log.flush(now)
        return closed

    def _write_stalled(self, conn: _GatedProtocol, now: float) -> bool:
        """True once the connection's answer has waited `write_timeout` seconds without the peer taking a
        byte. A handler still computing its answer has nothing waiting: never stalled."""
        mark = _write_progress(conn.transport)
        if mark is None or mark[1] == 0:
            conn.write_mark = conn.write_stalled_since = None
            return False
        if mark != conn.write_mark or conn.write_stalled_since is None:
            conn.write_mark, conn.write_stalled_since = mark, now
            return False
        return now - conn.write_stalled_since >= self.limits.write_timeout

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sweeper is not None:  # one sweep for every site the gate guards (HTTP and HTTPS)
            return

        def tick() -> None:
            self.sweep(self.clock())
            self._sweeper = loop.call_later(SWEEP_INTERVAL, tick)

        self._sweeper = loop.call_later(SWEEP_INTERVAL, tick)

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def status(self) -> dict[str, int]:
        return {"open_connections": len(self._open), "clients": len(self._per_client)}


def _write_progress(transport: asyncio.Transport | None) -> tuple[int, int] | None:
    """(bytes the peer has acknowledged, bytes waiting to reach it: asyncio's buffer and the socket's send
    queue), or None without a socket. A file sent with sendfile() never passes asyncio's buffer, so the
    kernel's counters are what show a peer that stopped reading."""
    if transport is None or transport.is_closing():
        return None
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    try:
        fd = sock.fileno()
        queued = struct.unpack("i", fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except OSError:
        return None
    acked = (_TCP_INFO_BYTES_ACKED.unpack_from(info, _TCP_INFO_BYTES_ACKED_OFFSET)[0]
             if len(info) >= _TCP_INFO_LEN else 0)
    return acked, queued + transport.get_write_buffer_size()


def _reset_on_close(transport: asyncio.Transport | None) -> None:
    """Close with a reset: a plain close queues a FIN behind the data the peer never takes, and the
    kernel keeps the socket and its buffers until it gives up on them."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class GatedSite(web.TCPSite):
    """aiohttp's TCPSite with the gate's protocol factory in front of the runner's server."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, gate: ConnectionGate, *,
                 backlog: int = 1024, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(runner, host, port, reuse_address=True, backlog=backlog, ssl_context=ssl_context)
        self._gate = gate

    async def start(self) -> None:
        # BaseSite.start registers the site with the runner (runner.addresses, cleanup); then our listener.
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        # TLS is started by the gate's protocol once it admitted the TCP connection (_GatedProtocol._start_tls),
        # so handshakes count toward the caps and the sweep as any connection does.
        self._server = await loop.create_server(self._gate.factory(server, self._ssl_context), self._host,
                                                self._port, backlog=self._backlog, reuse_address=True)
        self._gate.start(loop)

    async def stop(self) -> None:
        self._gate.stop()
        await super().stop()
