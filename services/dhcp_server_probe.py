"""Is another DHCP server on this segment? One DHCPDISCOVER out of one interface, then the OFFERs of a few
seconds, on the event loop (a stop cancels it at once). The packets are protocols/dhcp/probe.py's.

`imageserver init` asks it to propose proxy mode next to another server; the daemon asks it once per start
(appliance/daemon/rogue.py) to refuse its pool next to one. SO_BINDTODEVICE: the DISCOVER must not leave by
another interface. Offers from this box's own addresses (an imageserver already running here) do not count.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from protocols.dhcp.probe import Offer, discover_packet, parse_offer


@dataclass(slots=True)
class ProbeResult:
    offers: list[Offer] = field(default_factory=list)
    error: str | None = None  # the probe could not run (no permission, port in use): the mode is a guess

    @property
    def dhcp_servers(self) -> list[IPv4Address]:
        return sorted({x.server for x in self.offers if x.hands_out_addresses})


def probe_mac() -> str:
    """A random locally administered unicast MAC for the probe (never a real machine's)."""
    raw = bytes([0x02]) + secrets.token_bytes(5)
    return ":".join(f"{b:02x}" for b in raw)


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


async def _recvfrom(loop: asyncio.AbstractEventLoop, sock: socket.socket, size: int) -> tuple[bytes, Any]:
    """loop.sock_recvfrom, which uvloop does not implement: wait until readable, then read."""
    while True:
        try:
            return sock.recvfrom(size)
        except (BlockingIOError, InterruptedError):
            pass
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(sock.fileno(), _wake, ready)
        try:
            await ready
        finally:
            loop.remove_reader(sock.fileno())


async def probe(interface: str, mac: str, own: Iterable[IPv4Address], seconds: float) -> ProbeResult:
    """Send a DHCPDISCOVER from `mac` out of `interface` only, and collect OFFERs for `seconds`."""
    result = ProbeResult()
    own_set = set(own)
    xid = secrets.randbits(32)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.setblocking(False)
        sock.bind(("0.0.0.0", 68))
        sock.sendto(discover_packet(mac, xid), ("255.255.255.255", 67))
    except OSError as e:
        sock.close()
        reason = "needs root (port 68, SO_BINDTODEVICE)" if isinstance(e, PermissionError) else (e.strerror or str(e))
        result.error = f"could not probe {interface}: {reason}"
        return result
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    try:
        while (left := deadline - loop.time()) > 0:
            try:
                data, peer = await asyncio.wait_for(_recvfrom(loop, sock, 4096), left)
            except TimeoutError:
                break
            offer = parse_offer(data, peer[0], xid)
            if offer is not None and offer.server not in own_set and offer.sender not in own_set \
                    and offer not in result.offers:
                result.offers.append(offer)
    finally:
        sock.close()
    return result
