"""Another DHCP server on the provisioning segment: found at start-up, reported, and (authoritative mode)
answered by not handing out pool addresses, unless `[dhcp] allow_rogue = true`.

Two servers that both hand out addresses fight over every client: whichever OFFER arrives first wins,
so half the machines get an address (and boot file) from the other server. The probe is the init
wizard's (services/dhcp_server_probe.py): one DISCOVER out of the provisioning interface, then the
offers of `[dhcp] rogue_probe` seconds, on the event loop. It runs in
the background once the daemon is ready, so the start is not delayed (servers that ping or ARP before
offering take seconds to answer), and the pool is served during those seconds. Our own DHCP server
ignores the probe's MAC, and our own offers are not counted (server id = our address). The probe
runs once per start; a server that appears later is not noticed until the next start.
"""

from __future__ import annotations

from typing import Any

from appliance.config import Config
from services.dhcp import DhcpServer
from services.dhcp_server_probe import probe, probe_mac
from state.eventlog import EventLog

log = EventLog("imageserver.dhcp")


def refuse_pool(cfg: Config, found: dict[str, Any]) -> bool:
    return cfg.dhcp.mode == "authoritative" and bool(found.get("servers")) and not cfg.dhcp.allow_rogue


def apply(cfg: Config, server: DhcpServer) -> None:
    """(Re)decide from what was found and the config (also after SIGHUP: allow_rogue applies live)."""
    refusing = server.refuse_pool = refuse_pool(cfg, server.other_servers)
    if server.other_servers.get("servers"):
        log.warning("other-dhcp-server", servers=",".join(server.other_servers["servers"]), mode=cfg.dhcp.mode,
                    action="pool-refused" if refusing else "serving (allow_rogue or proxy mode)")


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
