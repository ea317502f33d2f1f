"""Another DHCP server on the provisioning segment: found at start-up, reported, and (authoritative mode)
answered by not handing out pool addresses, unless `[dhcp] allow_rogue = true`.

Two servers that both hand out addresses fight over every client: whichever OFFER arrives first wins,
so half the machines get an address (and boot file) from the other server. The probe is the init
wizard's (appliance/initwizard.py: its DISCOVER and its offer parsing): one DISCOVER out of the
provisioning interface, then the offers of `[dhcp] rogue_probe` seconds, on the event loop. It runs in
the background once the daemon is ready, so the start is not delayed (servers that ping or ARP before
offering take seconds to answer), and the pool is served during those seconds. Our own DHCP server
ignores the probe's MAC, and our own offers are not counted (server id = our address). The probe
runs once per start; a server that appears later is not noticed until the next start.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from ipaddress import IPv4Address
from typing import Any

from appliance.config import Config
from appliance.initwizard import ProbeResult, discover_packet, parse_offer
from services.dhcp import DhcpServer
from state.eventlog import EventLog

log = EventLog("imageserver.dhcp")


def probe_mac() -> str:
    """A random locally administered unicast MAC for the probe (never a real machine's)."""
    raw = bytes([0x02]) + secrets.token_bytes(5)
    return ":".join(f"{b:02x}" for b in raw)


def refuse_pool(cfg: Config, found: dict[str, Any]) -> bool:
    return cfg.dhcp.mode == "authoritative" and bool(found.get("servers")) and not cfg.dhcp.allow_rogue


def apply(cfg: Config, server: DhcpServer) -> None:
    """(Re)decide from what was found and the config (also after SIGHUP: allow_rogue applies live)."""
    refusing = server.refuse_pool = refuse_pool(cfg, server.other_servers)
    if server.other_servers.get("servers"):
        log.warning("other-dhcp-server", servers=",".join(server.other_servers["servers"]), mode=cfg.dhcp.mode,
                    action="pool-refused" if refusing else "serving (allow_rogue or proxy mode)")


async def probe(interface: str, mac: str, own: list[IPv4Address], seconds: float) -> ProbeResult:
    """The wizard's probe (same packet, same offer parsing) on the event loop, so a stop cancels it at once."""
    result = ProbeResult()
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
        result.error = f"could not probe {interface}: {e.strerror or e}"
        return result
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    try:
        while (left := deadline - loop.time()) > 0:
            try:
                data, peer = await asyncio.wait_for(loop.sock_recvfrom(sock, 4096), left)
            except TimeoutError:
                break
            offer = parse_offer(data, peer[0], xid)
            if offer is not None and offer.server not in own and offer.sender not in own \
                    and offer not in result.offers:
                result.offers.append(offer)
    finally:
        sock.close()
    return result


async def probe_and_apply(cfg: Config, server: DhcpServer) -> None:
    """Probe the segment once and record the result on the DHCP server (for /api/v1/status)."""
    if cfg.dhcp.rogue_probe <= 0:
        server.other_servers = {"probed": False, "servers": [], "error": "disabled ([dhcp] rogue_probe = 0)"}
        return
    if cfg.appliance.interface is None:
        server.other_servers = {"probed": False, "servers": [],
                                "error": "not probed: [appliance] interface is not set"}
        return
    mac = probe_mac()
    server.ignore_macs.add(mac)
    server.other_servers = {"probed": False, "servers": [], "error": None, "probing": True}
    own = [cfg.appliance.address] if cfg.appliance.address is not None else []
    try:
        result = await probe(cfg.appliance.interface, mac, own, cfg.dhcp.rogue_probe)
    finally:
        server.ignore_macs.discard(mac)
    server.other_servers = {
        "probed": result.error is None,
        "servers": [str(ip) for ip in result.dhcp_servers],
        "proxies": sorted({str(x.server) for x in result.offers if not x.hands_out_addresses}),
        "error": result.error,
    }
    if result.error:
        log.warning("rogue-probe-failed", error=result.error)
    apply(cfg, server)
