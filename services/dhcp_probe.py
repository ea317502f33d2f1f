"""Conflict probe before a DHCPOFFER: is anything already answering on the address we want to offer?

One raw ICMP socket shared by all probes; an echo request per address, a short wait for the reply.
Raw sockets need CAP_NET_RAW: without it the probe says so once in the log and every probe answers
"no conflict". Addresses probed recently are not probed again (a PXE ROM, iPXE and the installer
all DISCOVER within seconds), which keeps the probe off the fast path of a busy server.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import OrderedDict
from collections.abc import Callable
from ipaddress import IPv4Address

from protocols.icmp import IcmpError, echo_request, parse_echo_reply
from state.eventlog import EventLog

log = EventLog("imageserver.dhcp")


class ConflictProbe:
    def __init__(self, *, interface: str | None, timeout: float = 0.3, memory: float = 300.0,
                 monotonic: Callable[[], float]) -> None:
        self.interface = interface
        self.timeout = timeout
        self.memory = memory  # seconds an address counts as "probed recently"
        self._monotonic = monotonic
        self._sock: socket.socket | None = None
        self._waiting: dict[IPv4Address, asyncio.Future[bool]] = {}
        self._probed: OrderedDict[IPv4Address, float] = OrderedDict()
        self._ident = os.getpid() & 0xFFFF
        self._seq = 0
        self.available = False
        self.probes = 0
        self.conflicts = 0

    def open(self) -> None:
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        except PermissionError:
            log.warning("conflict-probe-disabled", reason="no raw socket permission (CAP_NET_RAW)")
            return
        try:
            if self.interface:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode())
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            log.warning("conflict-probe-disabled", reason=str(e))
            return
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)
        self._sock = sock
        self.available = True

    def close(self) -> None:
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        self.available = False
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_result(False)
        self._waiting.clear()

    def wanted(self, ip: IPv4Address) -> bool:
        """Whether `ip` should be probed now (not probed within `memory` seconds)."""
        if self._sock is None:
            return False
        now = self._monotonic()
        while self._probed and next(iter(self._probed.values())) < now - self.memory:
            self._probed.popitem(last=False)
        return ip not in self._probed

    async def in_use(self, ip: IPv4Address) -> bool:
        """Send one echo request to `ip`; True if it answered within the timeout."""
        if self._sock is None:
            return False
        self._probed[ip] = self._monotonic()
        self._probed.move_to_end(ip)
        fut = self._waiting.get(ip)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._waiting[ip] = fut
            self._seq += 1
            self.probes += 1
            try:
                self._sock.sendto(echo_request(self._ident, self._seq), (str(ip), 0))
            except OSError as e:  # no route to a relayed subnet, buffer full: treat as no answer
                log.debug("probe-send-failed", ip=ip, error=str(e))
        try:
            answered = await asyncio.wait_for(asyncio.shield(fut), self.timeout)
        except TimeoutError:
            answered = False
        finally:
            if self._waiting.get(ip) is fut:
                del self._waiting[ip]
        if answered:
            self.conflicts += 1
        return answered

    def _readable(self) -> None:
        assert self._sock is not None
        for _ in range(64):
            try:
                packet = self._sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            try:
                reply = parse_echo_reply(packet)
            except IcmpError:
                continue
            if reply is None or reply.identifier != self._ident:
                continue
            fut = self._waiting.get(reply.source)
            if fut is not None and not fut.done():
                fut.set_result(True)
