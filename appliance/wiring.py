"""Which services the daemon runs, built from the config. The list order is the start order.

Each service gets exactly the parts of the runtime it needs; services never see the Config object
whole, so a service can be constructed and tested without the appliance.
"""

from __future__ import annotations

from pathlib import Path

from appliance.bootfiles import BootFiles
from appliance.config import Config
from appliance.dhcp_setup import build_dhcp, load_leases, load_machines, reconfigure_dhcp
from appliance.dhcp_setup import subnets as dhcp_subnets
from appliance.dns_setup import build_dns, reconfigure_dns
from appliance.fdlimit import nofile_soft
from appliance.images.assignable import image_problem_rule
from appliance.runtime import Runtime
from services import (
    api_hostadmin,
    api_hosts,
    api_images,
    api_install,
    api_leases,
    api_machines,
    api_metrics,
    api_status,
    dashboard,
)
from services.api_client_scripts import ClientScripts
from services.api_client_scripts import routes as client_script_routes
from services.api_context import ApiContext
from services.api_hostadmin import HostSettings
from services.api_install import InstallSettings, SubnetInfo
from services.api_update import routes as update_routes
from services.base import Service
from services.bootresponder import BootResponder, BootSettings
from services.dhcp import DhcpServer
from services.discovery import DiscoveringMachineLog, Discovery, DiscoverySettings
from services.dns import DnsServer
from services.http import HttpServer, RouteFactory
from services.http_gate import ConnectionLimits
from services.rsyncd import RsyncdService, RsyncdSettings
from services.tftp import TftpLimits, TftpServer
from state.boot import BootPolicy
from state.credentials import RsyncClient, RsyncGrants, installing_clients
from state.discovery import unknown_boot
from state.images import list_versions
from state.leases import LeaseModel, PoolSpec
from state.sightings import MachineLog

BOOT_DIR = "boot"  # <state_dir>/boot: the TFTP root and HTTP /boot/files/
CLIENT_SCRIPTS_DIR = Path(__file__).parent / "data"


def api_route_modules() -> list[RouteFactory]:
    """The API route modules the HTTP server mounts (services/api_<domain>.py `routes`)."""
    return [api_status.routes, api_machines.routes, api_leases.routes, api_hosts.routes, api_install.routes,
            api_hostadmin.routes, api_metrics.routes, dashboard.routes, client_script_routes,
            update_routes, api_images.routes]


def boot_settings(cfg: Config) -> BootSettings:
    return BootSettings(
        policy=BootPolicy(unknown=unknown_boot(cfg.discovery.policy, cfg.boot.unknown),
                          poll_seconds=cfg.boot.poll_seconds),
        kernel_cmdline=cfg.boot.kernel_cmdline,
        http_port=cfg.http.port,
        address=str(cfg.appliance.address) if cfg.appliance.address is not None else None,
        via_pxelinux=cfg.boot.loader == "pxelinux",
    )


def rsyncd_hosts_allow(cfg: Config) -> tuple[str, ...]:
    """[rsyncd] hosts_allow, else the DHCP subnets and loopback: images are never exported to the world."""
    if cfg.rsyncd.hosts_allow:
        return tuple(str(n) for n in cfg.rsyncd.hosts_allow)
    return (*(str(s.subnet) for s in cfg.dhcp.subnets), "127.0.0.1")


def rsyncd_settings(cfg: Config) -> RsyncdSettings:
    return RsyncdSettings(state_dir=cfg.state_dir,
                          address=str(cfg.appliance.address) if cfg.appliance.address is not None else "0.0.0.0",
                          port=cfg.rsyncd.port, hosts_allow=rsyncd_hosts_allow(cfg))


def install_settings(cfg: Config) -> InstallSettings:
    """What /install/{mac}/script tells a host about its network and where to pull its image from."""
    return InstallSettings(
        address=str(cfg.appliance.address) if cfg.appliance.address is not None else None,
        rsync_port=cfg.rsyncd.port, auto_static=cfg.dhcp.auto_static, domain=cfg.appliance.domain,
        subnets=tuple(SubnetInfo(s.subnet, s.router, s.dns, s.domain) for s in cfg.dhcp.subnets))


def host_settings(cfg: Config) -> HostSettings:
    """What host changes over the API check against: the pools, auto_static, our address, the domain."""
    return HostSettings(pools=dhcp_subnets(cfg), auto_static=cfg.dhcp.auto_static,
                        own_addresses=(cfg.appliance.address,) if cfg.appliance.address is not None else (),
                        domain=cfg.appliance.domain)


def discovery_settings(cfg: Config) -> DiscoverySettings:
    d = cfg.discovery
    return DiscoverySettings(policy=d.policy, rules=d.rules, auto_static=cfg.dhcp.auto_static,
                             auto_max_hosts=d.auto_max_hosts, auto_max_per_window=d.auto_max_per_window,
                             auto_window=d.auto_window)


def pool_specs(cfg: Config) -> tuple[PoolSpec, ...]:
    """The configured DHCP pools, for pool usage in /metrics and /api/v1/pools."""
    return tuple(PoolSpec(s.subnet, s.pool_first, s.pool_last, s.lease_time) for s in cfg.dhcp.subnets)


def http_limits(cfg: Config) -> ConnectionLimits:
    # Half the descriptors at most: the rest are for TFTP transfers, files, the store and rsync. asyncio
    # accepts up to `backlog` connections per wake-up before the gate sees them (a burst holds two or three
    # such batches): an eighth of the descriptors, so that even a burst never meets EMFILE.
    nofile = nofile_soft()
    return ConnectionLimits(max_connections=max(1, min(cfg.http.max_connections, nofile // 2)),
                            max_per_client=cfg.http.max_connections_per_client,
                            idle_timeout=cfg.http.idle_timeout, header_timeout=cfg.http.header_timeout,
                            backlog=max(16, min(1024, nofile // 8)))


def tftp_limits(cfg: Config) -> TftpLimits:
    return TftpLimits(per_client=cfg.tftp.max_transfers_per_client, max_timeout=cfg.tftp.max_timeout,
                      stall_timeout=cfg.tftp.stall_timeout)


def build_services(rt: Runtime) -> list[Service]:
    cfg = rt.config
    boot_root = cfg.state_dir / BOOT_DIR
    services: list[Service] = []
    # First, so the boot files are in place before anything can ask for them.
    services.append(BootFiles(cfg.boot, boot_root, require_loader=cfg.tftp.enabled))
    machines = rt.models.get("machines")
    if machines is None:
        machines = rt.models["machines"] = load_machines(rt, DiscoveringMachineLog)
    # The lease book exists even with DHCP off: reservations can be managed before it is switched on.
    leases = rt.models.get("leases")
    if leases is None:
        leases = rt.models["leases"] = load_leases(rt)
    rt.models["hostbook"] = host_settings(cfg)
    # The one rule for giving a host an image (getimage's check at capture): API host adds and changes.
    rt.models["image_problem"] = image_problem_rule(rt.store.reader, cfg.state_dir)
    # Every sighting (DHCP or boot path) passes discovery: policy auto makes unknown machines hosts.
    discovery = rt.models["discovery"] = Discovery(rt.store, leases, discovery_settings(cfg), clock=rt.clock)
    if isinstance(machines, DiscoveringMachineLog):
        machines.on_seen = discovery.seen
    responder = BootResponder(rt.store, boot_settings(cfg), clock=rt.clock, machines=machines)
    rt.models["boot"] = responder
    rt.models["install"] = install_settings(cfg)
    rt.models["admin_networks"] = cfg.http.admin_networks
    rt.models["pools"] = pool_specs(cfg)
    # prepareclient and updateclient, as the package ships them (GET /client/{name}).
    rt.models["client_scripts"] = ClientScripts(CLIENT_SCRIPTS_DIR, ("prepareclient", "updateclient"))
    api = ApiContext(store=rt.store, admin_token=rt.admin_token, clock=rt.clock, models=rt.models,
                     status=rt.status, request_reload=rt.request_reload)
    if cfg.http.enabled:
        services.append(HttpServer(host=str(cfg.http.listen), port=cfg.http.port, boot_root=boot_root,
                                   responder=responder, api=api, route_modules=api_route_modules(),
                                   limits=http_limits(cfg)))
    if cfg.tftp.enabled:
        # The PXE ROM's first fetch (undionly.kpxe / ipxe.efi); pxelinux.cfg/01-<mac> is rendered per machine.
        services.append(TftpServer(root=boot_root, port=cfg.tftp.port, dynamic=responder.pxelinux_config,
                                   max_transfers=cfg.tftp.max_transfers, bind_device=cfg.appliance.interface,
                                   limits=tftp_limits(cfg)))
    if cfg.rsyncd.enabled:
        # The catalog is read from the store on every refresh: getimage (a separate process) commits a
        # row, WAL makes it visible here, and the next refresh exports it.
        def catalog() -> list[tuple[str, int, str]]:
            return [(v.name, v.version, v.path) for v in list_versions(rt.store.reader)]

        # Only machines installing (or updating, with a grant) may pull, each its own image, with its password.
        grants = rt.models.setdefault("rsync_grants", RsyncGrants.empty())

        def clients() -> list[RsyncClient]:
            now = rt.clock()
            return installing_clients(rt.store.reader, now) + grants.active(now)

        rsyncd = RsyncdService(rsyncd_settings(cfg), catalog, clock=rt.clock, monotonic=rt.monotonic,
                               clients=clients)
        rt.models["rsync_refresh"] = rsyncd.refresh
        services.append(rsyncd)
    if cfg.dns.enabled:
        # Names come from the store on every query (rebuilt after each commit): no restart for a new host.
        services.append(build_dns(rt))
    if cfg.dhcp.enabled:
        # Last: a client that gets an address can fetch its boot files at once.
        dhcp = build_dhcp(rt, leases, machines)
        dhcp.may_boot = discovery.may_boot if cfg.discovery.policy == "ignore" else None
        services.append(dhcp)
    return services


async def reconfigure_services(rt: Runtime, services: list[Service]) -> None:
    """Hand the re-read config (already in rt.config) to the services that take changes live.

    Listening addresses and ports are fixed at start; what a service can change live is its own call.
    """
    cfg = rt.config
    rt.models["install"] = install_settings(cfg)
    rt.models["admin_networks"] = cfg.http.admin_networks
    rt.models["pools"] = pool_specs(cfg)
    rt.models["hostbook"] = host_settings(cfg)
    discovery = rt.models.get("discovery")
    if isinstance(discovery, Discovery):
        discovery.settings = discovery_settings(cfg)
    machines = rt.models.get("machines")
    if isinstance(machines, MachineLog):  # a lower cap takes effect as new machines arrive
        machines.cap, machines.expiry = cfg.discovery.max_machines, cfg.discovery.machine_expiry
    responder = rt.models.get("boot")
    if isinstance(responder, BootResponder):
        responder.settings = boot_settings(cfg)
    for service in services:
        if isinstance(service, BootFiles):
            await service.reconfigure(cfg.boot)
        if isinstance(service, RsyncdService):
            service.set_hosts_allow(rsyncd_hosts_allow(cfg))
        if isinstance(service, DnsServer):
            reconfigure_dns(rt, service)
        if isinstance(service, DhcpServer) and isinstance(discovery, Discovery):
            service.may_boot = discovery.may_boot if cfg.discovery.policy == "ignore" else None
    leases = rt.models.get("leases")
    if isinstance(leases, LeaseModel):
        reconfigure_dhcp(rt, leases, next((s for s in services if isinstance(s, DhcpServer)), None))
