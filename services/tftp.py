"""The TFTP server: sockets, timers and files around protocols.tftp's transfer machine.

Port 69 only admits requests; every transfer gets its own ephemeral socket (RFC 1350 TID).
Sockets are driven with loop.add_reader and plain sendto, the leanest path asyncio offers for a
window of datagrams per ACK. Each transfer arms one lazy timer: when it fires early (the
deadline moved on with progress) it is simply re-armed, so ACKs never touch the timer heap.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import stat
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domain.settings import TftpConfig
from protocols.tftp import (
    Admitted,
    ErrorCode,
    Outcome,
    Reader,
    ReadTransfer,
    TftpError,
    admit,
    encode_error,
)
from services.base import ServiceError, ServiceStatus
from services.ratelimit import LimitedLog
from state.eventlog import EventLog

log = EventLog("imageserver.tftp")

Dynamic = Callable[[str, tuple[str, int]], bytes | None]
# Whether a client address belongs to a machine the appliance knows (a reservation, a lease, a host): when
# every slot is taken, such a client gets one of a stranger's slots (a PXE ROM told "busy" does not boot).
Known = Callable[[str], bool]

_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux value; Python < 3.13 lacks the constant
_PKTINFO_SIZE = 12  # struct in_pktinfo: ifindex, spec_dst, addr
_REQUEST_BUFFER = 65535
# ACKs are 4 bytes and ERRORs short (a longer one's text is cut, its NUL optional); anything bigger is garbage
# anyway. Under 512 bytes with its header, each datagram's bytes object comes from CPython's small-object
# allocator instead of a malloc + realloc per ACK.
_TRANSFER_BUFFER = 476
_DRAIN = 64  # datagrams handled per readiness callback before yielding to other sockets
_MAX_WINDOWSIZE = 64  # larger bursts overflow a client's default receive buffer (~200 KiB)
_UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)  # Linux >= 4.18; Python 3.11 lacks the constant
_GSO_MAX_SEGMENTS = 64  # UDP_MAX_SEGMENTS on older kernels
_UDP_MAX_PAYLOAD = 65507
# Out of descriptors or memory: the server is busy, not the file forbidden.
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


# Resends before the peer's first ACK (a spoofed source never sends one); what else a client that never
# answers can hold is [tftp]'s (TftpConfig; see protocols/tftp/transfer.py for the bounds).
FIRST_ACK_RETRIES = 1


class _ContentCache:
    """Small files kept in memory, keyed on (real path, mtime, size, inode); LRU within `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: OrderedDict[tuple[str, int, int, int], bytes] = OrderedDict()
        self._total = 0

    def get(self, key: tuple[str, int, int, int]) -> bytes | None:
        content = self._entries.get(key)
        if content is not None:
            self._entries.move_to_end(key)
        return content

    def put(self, key: tuple[str, int, int, int], content: bytes) -> None:
        if len(content) > self.limit:
            return
        self._entries[key] = content
        self._total += len(content)
        while self._total > self.limit:
            _, evicted = self._entries.popitem(last=False)
            self._total -= len(evicted)


@dataclass(slots=True, eq=False)
class _Transfer:
    sock: socket.socket
    peer: tuple[str, int]
    name: str
    machine: ReadTransfer
    started: float
    fd: int | None = None
    timer: asyncio.TimerHandle | None = None
    closed: bool = False
    gso_batch: int = 0  # datagrams per UDP GSO send; 0: one sendto per datagram
    known: bool | None = None  # the peer is a known machine (asked only when slots run out, then kept)
    # Bound once: lock-step's per-block path looks up nothing else.
    recvfrom: Callable[[int], tuple[bytes, Any]] = field(init=False)
    sendto: Callable[[bytes | bytearray | memoryview, tuple[str, int]], int] = field(init=False)
    lockstep: Callable[[bytes, float], bytearray | memoryview | None] = field(init=False)

    def __post_init__(self) -> None:
        self.recvfrom, self.sendto = self.sock.recvfrom, self.sock.sendto
        self.lockstep = self.machine.receive_lockstep


class TftpServer:
    """Read-only TFTP server for boot files (implements services.base.Service)."""

    name = "tftp"

    def __init__(
        self,
        *,
        root: Path,
        host: str = "0.0.0.0",
        port: int = 69,
        dynamic: Dynamic | None = None,
        clock: Callable[[], float] = time.monotonic,
        bind_device: str | None = None,
        memory_cache_limit: int = 8 * 1024 * 1024,
        settings: TftpConfig | None = None,
        known: Known | None = None,
    ) -> None:
        self._root = Path(root)
        self._root_real = ""
        self._host = host
        self._requested_port = port
        self._port = 0
        self._dynamic = dynamic
        self._clock = clock
        self._bind_device = bind_device
        self._cache = _ContentCache(memory_cache_limit)
        self._status = ServiceStatus()
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transfers: set[_Transfer] = set()
        # The caps and timeouts ([tftp]); the socket's port is `port`, fixed at start.
        self.settings = settings or TftpConfig()
        self._per_client: Counter[str] = Counter()
        self._log = LimitedLog(log)
        self._known = known

    @property
    def port(self) -> int:
        return self._port

    def reconfigure(self, settings: TftpConfig) -> None:
        """New caps and timeouts (SIGHUP): transfers that start from now on get them; running ones keep theirs."""
        self.settings = settings

    # --- Service -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._sock is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._root_real = os.path.realpath(self._root)
        try:
            sock = self._new_socket((self._host, self._requested_port))
            sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
        except OSError as exc:
            message = f"tftp: cannot listen on {self._host}:{self._requested_port}: {exc.strerror or exc}"
            self._status.state, self._status.error = "failed", message
            raise ServiceError(message) from exc
        if not os.path.isdir(self._root_real):
            sock.close()
            message = f"tftp: root {self._root} is not a directory"
            self._status.state, self._status.error = "failed", message
            raise ServiceError(message)
        self._sock = sock
        self._port = sock.getsockname()[1]
        self._loop.add_reader(sock.fileno(), self._on_request_readable)
        self._status.state, self._status.error = "running", None
        self._status.listen = [f"{self._host}:{self._port}/udp"]
        log.info("tftp-listening", addr=f"{self._host}:{self._port}", root=self._root_real)

    async def stop(self) -> None:
        for transfer in list(self._transfers):
            self._close(transfer, "stopped")
        if self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
        self._sock = None
        self._status.state = "stopped"
        self._status.listen = []

    def status(self) -> dict[str, Any]:
        result = self._status.as_dict()
        result["active_transfers"] = len(self._transfers)
        return result

    # --- sockets -------------------------------------------------------------------------------

    def _new_socket(self, address: tuple[str, int]) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if self._bind_device:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self._bind_device.encode())
            sock.bind(address)
        except OSError:
            sock.close()
            raise
        return sock

    def _reply(self, sock: socket.socket, datagram: bytes, peer: tuple[str, int]) -> None:
        """Send an ERROR datagram outside any transfer's flow."""
        try:
            sock.sendto(datagram, peer)
        except OSError as exc:  # full buffer or unreachable peer: the reply is just lost
            log.debug("tftp-send-failed", peer=f"{peer[0]}:{peer[1]}", error=str(exc))
            return
        self._status.counters["errors_sent"] += 1

    # --- request port --------------------------------------------------------------------------

    def _on_request_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for _ in range(_DRAIN):
            try:
                data, ancdata, _flags, peer = sock.recvmsg(_REQUEST_BUFFER, socket.CMSG_SPACE(_PKTINFO_SIZE))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("tftp-recv-failed", error=str(exc))
                return
            try:
                self._on_request(data, peer, _local_address(ancdata, self._host))
            except Exception as exc:  # a bug must cost one request, never the server
                self._status.counters["internal_errors"] += 1
                self._log.log("tftp-request-failed", self._clock(), logging.ERROR,
                              "tftp-request-failed", peer=f"{peer[0]}:{peer[1]}", exc_info=exc)

    def _on_request(self, data: bytes, peer: tuple[str, int], local: str) -> None:
        assert self._sock is not None
        counters = self._status.counters
        decision = admit(data)
        if not isinstance(decision, Admitted):
            counters["requests_refused"] += 1
            self._log.log("tftp-refused", self._clock(), logging.INFO, "tftp-refused", peer=f"{peer[0]}:{peer[1]}",
                          reason=decision.reason)
            if decision.reply is not None:
                self._reply(self._sock, decision.reply, peer)
            return
        for t in self._transfers:
            if t.peer == peer and t.name == decision.name and t.machine.awaiting_first_ack:
                counters["duplicate_requests"] += 1  # a retransmitted RRQ: its first answer was lost
                self._send(t, t.machine.repeat_first(self._clock()))
                return
        if len(self._transfers) >= self.settings.max_transfers:
            # A machine we know (under its own cap) may take a stranger's slot; with none to take, it waits.
            known = self._per_client[peer[0]] < self.settings.max_transfers_per_client and self._is_known(peer[0])
            if not known:
                self._busy(peer, "full")
                return
            if not self._make_room(peer):
                self._defer(peer)
                return
        if self._per_client[peer[0]] >= self.settings.max_transfers_per_client:
            self._busy(peer, "per-client")
            return
        try:
            source, size, fd = self._open(decision, peer)
        except TftpError as exc:
            counters["requests_refused"] += 1
            self._log.log("tftp-refused-file", self._clock(), logging.INFO,
                          "tftp-refused", peer=f"{peer[0]}:{peer[1]}", file=decision.name, reason=str(exc))
            self._reply(self._sock, encode_error(exc.code, str(exc)), peer)
            return
        self._begin(decision, peer, local, source, size, fd)

    def _make_room(self, peer: tuple[str, int]) -> bool:
        """Every slot taken and a known machine asks: it ends a stranger's transfer (one still waiting for its
        first ACK if any, else the oldest), so a flood of strangers under their per-client cap cannot keep
        a booting machine out. No stranger to end: no room."""
        known = self._known
        assert known is not None
        victim: _Transfer | None = None
        for t in self._transfers:
            if t.known is None:
                t.known = known(t.peer[0])
            if t.known:
                continue
            if victim is None or (t.machine.awaiting_first_ack, -t.started) > (
                    victim.machine.awaiting_first_ack, -victim.started):
                victim = t
        if victim is None:
            return False
        self._status.counters["transfers_evicted"] += 1
        vpeer = f"{victim.peer[0]}:{victim.peer[1]}"
        self._log.log("tftp-evicted", self._clock(), logging.INFO, "tftp-evicted", peer=vpeer, file=victim.name,
                      for_peer=f"{peer[0]}:{peer[1]}")
        self._reply(victim.sock, encode_error(ErrorCode.NOT_DEFINED, "server busy"), victim.peer)
        self._close(victim, "evicted")
        return True

    def _is_known(self, address: str) -> bool:
        return self._known is not None and self._known(address)

    def _defer(self, peer: tuple[str, int]) -> None:
        """Every slot is held by machines we know, and another one asks (a boot storm): no answer. Its ROM
        resends the RRQ after its timeout and finds a slot then; told "server busy", it would not boot."""
        self._status.counters["requests_deferred"] += 1
        self._log.log("tftp-full-deferred", self._clock(), logging.INFO, "tftp-deferred",
                      peer=f"{peer[0]}:{peer[1]}", transfers=len(self._transfers))

    def _busy(self, peer: tuple[str, int], reason: str) -> None:
        assert self._sock is not None
        self._status.counters["busy_refusals"] += 1
        self._status.counters[f"busy_{reason.replace('-', '_')}"] += 1
        self._log.log(f"tftp-busy-{reason}", self._clock(), logging.WARNING,
                      "tftp-busy", peer=f"{peer[0]}:{peer[1]}", reason=reason, transfers=len(self._transfers),
                      client_transfers=self._per_client[peer[0]])
        self._reply(self._sock, encode_error(ErrorCode.NOT_DEFINED, "server busy"), peer)

    def _begin(self, decision: Admitted, peer: tuple[str, int], local: str,
               source: bytes | Reader, size: int, fd: int | None) -> None:
        """Start the transfer; owns `fd` from here on (closed with the transfer or on failure)."""
        assert self._sock is not None and self._loop is not None
        try:
            s = self.settings
            machine = ReadTransfer(decision.request, source, size=size, max_windowsize=_MAX_WINDOWSIZE,
                                   max_timeout=s.max_timeout, first_ack_retries=FIRST_ACK_RETRIES,
                                   first_ack_backoff=2.0, stall_timeout=s.stall_timeout)
            sock = self._new_socket((local, 0))
        except OSError as exc:
            if fd is not None:
                os.close(fd)
            self._log.log("tftp-no-socket", self._clock(), logging.WARNING,
                          "tftp-no-socket", peer=f"{peer[0]}:{peer[1]}", error=str(exc))
            self._busy(peer, "no-socket")
            return
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise
        now = self._clock()
        transfer = _Transfer(sock, peer, decision.name, machine, now, fd)
        transfer.gso_batch = _enable_gso(sock, machine.blksize + 4) if machine.windowsize > 1 else 0
        self._transfers.add(transfer)
        self._per_client[peer[0]] += 1
        self._status.counters["transfers_started"] += 1
        self._loop.add_reader(sock.fileno(), self._on_transfer_readable, transfer)
        try:
            self._send(transfer, machine.start(now))
        except Exception as exc:  # e.g. an I/O error reading the first window
            self._status.counters["internal_errors"] += 1
            log.exception("tftp-transfer-error", peer=f"{peer[0]}:{peer[1]}", file=transfer.name)
            self._reply(sock, encode_error(ErrorCode.NOT_DEFINED, "internal error"), peer)
            self._close(transfer, f"error:{type(exc).__name__}")
            return
        self._arm(transfer)

    def _open(self, decision: Admitted, peer: tuple[str, int]) -> tuple[bytes | Reader, int, int | None]:
        """Content for the request: dynamic first, then memory cache, then a kept-open fd."""
        counters = self._status.counters
        if self._dynamic is not None:
            try:
                content = self._dynamic(decision.name, peer)
            except Exception as exc:
                log.exception("tftp-dynamic-failed", file=decision.name)
                raise TftpError("internal error", ErrorCode.NOT_DEFINED) from exc
            if content is not None:
                if not isinstance(content, bytes | bytearray | memoryview):
                    log.error("tftp-dynamic-not-bytes", type=type(content).__name__, file=decision.name)
                    raise TftpError("internal error", ErrorCode.NOT_DEFINED)
                counters["dynamic_served"] += 1
                return content, len(content), None
        real = os.path.realpath(os.path.join(self._root_real, *decision.path))
        if os.path.commonpath((real, self._root_real)) != self._root_real or real == self._root_real:
            raise TftpError("access violation", ErrorCode.ACCESS_VIOLATION)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise TftpError("file not found", ErrorCode.FILE_NOT_FOUND) from exc
        except OSError as exc:  # permission, symlink swapped in, ... or out of descriptors
            if exc.errno in _RESOURCE_ERRNOS:
                raise TftpError("server busy", ErrorCode.NOT_DEFINED) from exc
            raise TftpError("access violation", ErrorCode.ACCESS_VIOLATION) from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise TftpError("file not found", ErrorCode.FILE_NOT_FOUND)
            if st.st_size > self._cache.limit:
                counters["files_streamed"] += 1
                return _pread_reader(fd), st.st_size, fd
            key = (real, st.st_mtime_ns, st.st_size, st.st_ino)
            content = self._cache.get(key)
            if content is None:
                counters["cache_misses"] += 1
                content = _read_all(fd, st.st_size)
                self._cache.put(key, content)
            else:
                counters["cache_hits"] += 1
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        return content, len(content), None

    # --- transfers -----------------------------------------------------------------------------

    def _send(self, transfer: _Transfer, datagrams: list[bytes]) -> None:
        sendto, peer, batch = transfer.sock.sendto, transfer.peer, transfer.gso_batch
        try:
            if len(datagrams) == 1:  # lock-step: one DATA per ACK
                sendto(datagrams[0], peer)
                return
            if batch and len(datagrams) > 1:
                # UDP GSO: the kernel cuts the joined window at blksize+4, so one syscall sends
                # up to `batch` datagrams. Only the final block is short, and it comes last.
                for i in range(0, len(datagrams), batch):
                    sendto(b"".join(datagrams[i : i + batch]), peer)
                return
            for datagram in datagrams:
                sendto(datagram, peer)
        except (BlockingIOError, InterruptedError) as exc:  # buffer full: the rest counts as lost
            log.debug("tftp-send-failed", peer=f"{peer[0]}:{peer[1]}", error=str(exc))
        except OSError as exc:
            if batch:  # the path cannot segment (MTU below blksize, no checksum offload...)
                log.info("tftp-gso-off", peer=f"{peer[0]}:{peer[1]}", error=str(exc))
                transfer.gso_batch = 0
                transfer.sock.setsockopt(socket.IPPROTO_UDP, _UDP_SEGMENT, 0)
                self._send(transfer, datagrams)
            else:  # peer unreachable: lost, the retransmission timer decides
                log.debug("tftp-send-failed", peer=f"{peer[0]}:{peer[1]}", error=str(exc))

    def _on_transfer_readable(self, transfer: _Transfer) -> None:
        # One datagram per wake-up: in steady state exactly one ACK is waiting, and a second
        # recvfrom would only fail with EAGAIN. Level-triggered polling calls again for more.
        try:
            try:
                data, sender = transfer.recvfrom(_TRANSFER_BUFFER)
            except (BlockingIOError, InterruptedError):
                return
            if sender == transfer.peer:
                datagram = transfer.lockstep(data, self._clock())  # lock-step: the ACK gives the next DATA
                if datagram is not None:
                    try:
                        transfer.sendto(datagram, sender)
                    except OSError as exc:  # buffer full or peer unreachable: lost, the retransmission timer decides
                        log.debug("tftp-send-failed", peer=f"{sender[0]}:{sender[1]}", error=str(exc))
                    return
            self._on_transfer_datagram(transfer, data, sender)
        except Exception as exc:  # a bug or an I/O error costs this transfer, never the server
            peer = transfer.peer
            self._status.counters["internal_errors"] += 1
            log.exception("tftp-transfer-error", peer=f"{peer[0]}:{peer[1]}", file=transfer.name)
            self._reply(transfer.sock, encode_error(ErrorCode.NOT_DEFINED, "internal error"), peer)
            self._close(transfer, f"error:{type(exc).__name__}")

    def _on_transfer_datagram(self, transfer: _Transfer, data: bytes, sender: tuple[str, int]) -> None:
        """Whatever is not lock-step's steady state: a stranger, a window, the last block, an ERROR, garbage."""
        if sender != transfer.peer:
            self._status.counters["unknown_tid"] += 1
            if data[:2] != b"\x00\x05":  # never answer an ERROR with an ERROR
                self._reply(transfer.sock, encode_error(ErrorCode.UNKNOWN_TID, "unknown transfer ID"), sender)
            return
        machine = transfer.machine
        self._send(transfer, machine.receive(data, self._clock()))
        if machine.finished:
            self._close(transfer, machine.outcome.value)

    def _arm(self, transfer: _Transfer) -> None:
        deadline = transfer.machine.deadline
        if deadline is None or transfer.closed:
            return
        assert self._loop is not None
        transfer.timer = self._loop.call_later(max(deadline - self._clock(), 0.0), self._on_timer, transfer)

    def _on_timer(self, transfer: _Transfer) -> None:
        transfer.timer = None
        if transfer.closed:
            return
        machine = transfer.machine
        try:
            self._send(transfer, machine.on_timeout(self._clock()))
        except Exception as exc:
            self._status.counters["internal_errors"] += 1
            log.exception("tftp-retransmit-error", peer=f"{transfer.peer[0]}:{transfer.peer[1]}", file=transfer.name)
            self._close(transfer, f"error:{type(exc).__name__}")
            return
        if machine.finished:
            self._close(transfer, machine.outcome.value)
        else:
            self._arm(transfer)

    def _close(self, transfer: _Transfer, outcome: str) -> None:
        if transfer.closed:
            return
        transfer.closed = True
        self._transfers.discard(transfer)
        self._per_client[transfer.peer[0]] -= 1
        if self._per_client[transfer.peer[0]] <= 0:
            del self._per_client[transfer.peer[0]]
        if transfer.timer is not None:
            transfer.timer.cancel()
        if self._loop is not None:
            self._loop.remove_reader(transfer.sock.fileno())
        transfer.sock.close()
        if transfer.fd is not None:
            os.close(transfer.fd)
        machine = transfer.machine
        counters = self._status.counters
        counters["bytes_sent"] += machine.bytes_transferred
        counters["datagrams_sent"] += machine.datagrams_sent
        counters["retransmissions"] += machine.retransmissions
        if outcome == Outcome.COMPLETED:
            counters["transfers_completed"] += 1
        elif outcome == Outcome.PEER_ERROR:
            counters["transfers_aborted"] += 1  # the client said stop (e.g. after a tsize probe)
        else:
            counters["transfers_failed"] += 1
        now = self._clock()
        seconds = now - transfer.started
        fields: dict[str, Any] = {  # Any: the values differ in type
            "peer": f"{transfer.peer[0]}:{transfer.peer[1]}", "file": transfer.name,
            "bytes": machine.bytes_transferred, "blksize": machine.blksize, "windowsize": machine.windowsize,
            "seconds": f"{seconds:.3f}", "outcome": outcome,
            **({"peer_error": machine.peer_error} if machine.peer_error else {})}
        if outcome in (Outcome.COMPLETED, Outcome.PEER_ERROR):
            log.info("tftp-transfer", **fields)
        else:  # every completed transfer is logged; failures (a never-answering flood) are rate-limited
            self._log.log("tftp-transfer-failed", now, logging.INFO, "tftp-transfer", **fields)


def _local_address(ancdata: list[tuple[int, int, bytes]], fallback: str) -> str:
    """The address the request was sent to (IP_PKTINFO spec_dst), so replies come from it."""
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == _IP_PKTINFO and len(data) >= _PKTINFO_SIZE:
            return socket.inet_ntoa(data[4:8])
    return fallback


def _enable_gso(sock: socket.socket, segment: int) -> int:
    """Turn on UDP GSO for `segment`-byte datagrams; returns datagrams per send (0: not available)."""
    batch = min(_GSO_MAX_SEGMENTS, _UDP_MAX_PAYLOAD // segment)
    if batch < 2:
        return 0
    try:
        sock.setsockopt(socket.IPPROTO_UDP, _UDP_SEGMENT, segment)
    except OSError:
        return 0
    return batch


def _pread_reader(fd: int) -> Reader:
    def read(offset: int, size: int) -> bytes:
        return os.pread(fd, size, offset)

    return read


def _read_all(fd: int, size: int) -> bytes:
    chunks, offset = [], 0
    while offset < size:
        chunk = os.pread(fd, min(size - offset, 1 << 20), offset)
        if not chunk:
            break  # the file shrank under us: serve what is there
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)
