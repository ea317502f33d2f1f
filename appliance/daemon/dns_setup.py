"""From the config to the DNS server and the zone it serves (used by wiring)."""

from __future__ import annotations

from appliance.config import Config
from appliance.daemon.runtime import Apply, Runtime
from protocols.dns import ZoneSettings
from services.dns import DnsServer, StoreZone, Upstream
from state.names import NameIndex

UPSTREAM_PORT = 53


def zone_settings(cfg: Config) -> ZoneSettings:
    # The DHCP subnets are the networks whose reverse names we own: a PTR query for an address there
    # is answered here (NXDOMAIN if nobody has it) instead of leaking to an upstream that cannot know.
    return ZoneSettings(domain=cfg.appliance.domain, hostname=cfg.appliance.hostname,
                        address=cfg.appliance.address, ttl=cfg.dns.ttl,
                        reverse_networks=tuple(s.subnet for s in cfg.dhcp.subnets))


def upstreams(cfg: Config) -> tuple[Upstream, ...]:
    return tuple((str(u), UPSTREAM_PORT) for u in cfg.dns.upstreams)


def build_dns(rt: Runtime) -> DnsServer:
    cfg = rt.config
    # Names are read from the store's reader connection on the loop thread, like every other read.
    zone = StoreZone(NameIndex(rt.store.reader, reserved=(cfg.appliance.hostname,)), zone_settings(cfg),
                     clock=rt.clock)
    host = str(cfg.appliance.address) if cfg.appliance.address is not None else "0.0.0.0"
    return DnsServer(host=host, port=cfg.dns.port, zone=zone, upstreams=upstreams(cfg))


def prepare_dns(server: DnsServer, cfg: Config) -> Apply:
    """SIGHUP: domain, hostname, ttl, reverse networks and upstreams change live; the port does not."""
    zone, ups = zone_settings(cfg), upstreams(cfg)

    def apply() -> None:
        if isinstance(server.zone, StoreZone):
            server.zone.configure(zone)
        server.reconfigure(ups)

    return apply
