"""Which services the daemon runs, built from the config. The list order is the start order.

Each service gets exactly the parts of the runtime it needs; services never see the Config object
whole, so a service can be constructed and tested without the appliance.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from ipaddress import IPv4Address

from appliance import shipped, tls
from appliance.boot.bootfiles import BootFiles
from appliance.boot.installer.runtime import client_script
from appliance.config import Config
from appliance.daemon.dhcp_setup import build_dhcp, load_leases, load_machines, prepare_dhcp
from appliance.daemon.dhcp_setup import subnets as dhcp_subnets
from appliance.daemon.dns_setup import build_dns, prepare_dns
from appliance.daemon.fdlimit import nofile_soft
from appliance.daemon.runtime import Apply, ReconfigureError, Reconfigurer, Runtime
from appliance.daemon.satellite import build_link
from appliance.images.assignable import image_problem_rule
from appliance.token import replace_token
from domain.discovery import unknown_boot
from domain.installs import InstallSettings
from services import (
    api_audit,
    api_bulk,
    api_client_scripts,
    api_hardware,
    api_hostadmin,
    api_hosts,
    api_images,
    api_install,
    api_leases,
    api_machines,
    api_metrics,
    api_multicast,
    api_power,
    api_profiles,
    api_satellite,
    api_status,
    api_tokens,
    api_torrents,
    api_update,
    dashboard,
    torrents,
)
from services.api_context import ApiContext
from services.base import Service
from services.bootresponder import BootResponder, BootSettings
from services.dhcp import DhcpServer
from services.discovery import DiscoveringMachineLog, Discovery
from services.http import HttpServer, RouteModule, TlsListener
from services.http_gate import ConnectionLimits
from services.live import ClientScripts, HostSettings
from services.multicast import MulticastService
from services.power.poller import PowerPoller
from services.rsyncd import RsyncdService, RsyncdSettings
from services.tftp import TftpServer
from state import satellites
from state.boot import BootPolicy
from state.credentials import RsyncClient, RsyncGrants, installing_clients
from state.hosts import host_by_ip
from state.images import list_versions
from state.lease_pools import PoolSpec
from state.lease_validators import LeaseError
from state.leases import LeaseModel

BOOT_DIR = "boot"  # <state_dir>/boot: the TFTP root and HTTP /boot/files/
CLIENT_SCRIPTS_DIR = shipped.data_dir()  # appliance/data


def api_route_modules() -> list[RouteModule]:
    """The API route modules the HTTP server mounts (services/api_<domain>.py `ROUTES`: declared routes)."""
    return [api_status.ROUTES, api_machines.ROUTES, api_leases.ROUTES, api_hosts.ROUTES, api_install.ROUTES,
            api_hostadmin.ROUTES, api_metrics.ROUTES, dashboard.ROUTES, api_client_scripts.ROUTES,
            api_update.ROUTES, api_images.ROUTES, api_multicast.ROUTES, api_satellite.ROUTES, api_torrents.ROUTES,
            api_power.ROUTES, api_profiles.ROUTES, api_bulk.ROUTES, api_tokens.ROUTES, api_audit.ROUTES,
            api_hardware.ROUTES]


def boot_settings(cfg: Config) -> BootSettings:
    return BootSettings(
        policy=BootPolicy(unknown=unknown_boot(cfg.discovery.policy, cfg.boot.unknown),
                          poll_seconds=cfg.boot.poll_seconds, inspect=cfg.discovery.inspect),
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
                          port=cfg.rsyncd.port, hosts_allow=rsyncd_hosts_allow(cfg),
                          max_connections=cfg.rsyncd.max_connections)


def install_settings(cfg: Config) -> InstallSettings:
    """What /install/{mac}/script tells a host about its network and where to pull its image from."""
    return InstallSettings(
        address=str(cfg.appliance.address) if cfg.appliance.address is not None else None,
        rsync_port=cfg.rsyncd.port, auto_static=cfg.dhcp.auto_static, domain=cfg.appliance.domain,
        subnets=cfg.dhcp.subnets)


def host_settings(cfg: Config) -> HostSettings:
    """What host changes over the API check against: the pools, auto_static, our address, the domain."""
    return HostSettings(pools=dhcp_subnets(cfg), auto_static=cfg.dhcp.auto_static,
                        own_addresses=(cfg.appliance.address,) if cfg.appliance.address is not None else (),
                        domain=cfg.appliance.domain)


def pool_specs(cfg: Config) -> tuple[PoolSpec, ...]:
    """The configured DHCP pools, for pool usage in /metrics and /api/v1/pools."""
    return tuple(PoolSpec(s.subnet, s.pool_first, s.pool_last, s.lease_time) for s in cfg.dhcp.subnets)


def http_limits(cfg: Config) -> ConnectionLimits:
    return ConnectionLimits.of(cfg.http, nofile_soft())


def tls_listener(cfg: Config) -> TlsListener | None:
    """[https], with its certificate (made self-signed under the state dir when none is given and none is
    there yet: the fingerprint is in the log line https-listening)."""
    if not cfg.https.enabled:
        return None
    certificate = tls.ensure(cfg)
    host = str(cfg.https.listen if cfg.https.listen is not None else cfg.http.listen)
    return TlsListener(host, cfg.https.port, tls.server_context(certificate), certificate.fingerprint)


def known_client(rt: Runtime, leases: LeaseModel) -> Callable[[str], bool]:
    """TFTP's question when its slots run out: is this address a machine we know (reserved, leased, a host)?"""
    def known(address: str) -> bool:
        try:
            ip = IPv4Address(address)
        except ValueError:
            return False
        return leases.holds_address(ip, rt.clock()) or host_by_ip(rt.store.reader, ip) is not None

    return known


def _live_settings(rt: Runtime) -> None:
    """The settings the API and services read from the config (at start and after SIGHUP)."""
    cfg, live = rt.config, rt.live
    live.install = install_settings(cfg)
    live.hostbook = host_settings(cfg)
    live.admin_networks = tuple(cfg.http.admin_networks)
    live.loopback_tokens = cfg.http.loopback_tokens
    live.https_port = cfg.https.port if cfg.https.enabled else None
    live.audit_limits = (cfg.audit.max_entries, cfg.audit.max_age)
    live.pools = pool_specs(cfg)
    live.power = cfg.power


def build_services(rt: Runtime) -> list[Service]:
    cfg = rt.config
    boot_root = cfg.state_dir / BOOT_DIR
    services: list[Service] = []
    rt.reconfigurers.clear()
    # First, so the boot files are in place before anything can ask for them.
    bootfiles = BootFiles(cfg.boot, boot_root, require_loader=cfg.tftp.enabled)
    services.append(bootfiles)
    rt.reconfigurers.append(Reconfigurer("bootfiles", lambda new: lambda: bootfiles.reconfigure(new.boot)))
    live = rt.live
    machines = live.machines
    if machines is None:
        machines = live.machines = load_machines(rt, DiscoveringMachineLog)
    # The lease book exists even with DHCP off: reservations can be managed before it is switched on.
    leases = live.leases
    if leases is None:
        leases = live.leases = load_leases(rt)
    # The one rule for giving a host an image (getimage's check at capture): API host adds and changes.
    live.image_problem = image_problem_rule(rt.store.reader, cfg.state_dir)
    # Every sighting (DHCP or boot path) passes discovery: policy auto makes unknown machines hosts.
    discovery = live.discovery = Discovery(rt.store, leases, cfg.discovery, clock=rt.clock,
                                           auto_static=cfg.dhcp.auto_static)
    if isinstance(machines, DiscoveringMachineLog):
        machines.on_seen = discovery.seen
    responder = live.boot = BootResponder(rt.store, boot_settings(cfg), clock=rt.clock, machines=machines)
    _live_settings(rt)
    rt.reconfigurers.append(Reconfigurer("api", lambda new: _prepare_live(rt, new)))
    # prepareclient and updateclient, as the package ships them (GET /client/{name}).
    live.client_scripts = ClientScripts(CLIENT_SCRIPTS_DIR, ("prepareclient", "updateclient"), client_script)
    def replace_admin_token() -> str:  # it was seen in clear (services/auth.py): the file gets a new one
        rt.admin_token = replace_token(cfg.state_dir)
        return rt.admin_token

    api = ApiContext(store=rt.store, admin_token=rt.admin_token, clock=rt.clock, live=live,
                     status=rt.status, request_reload=rt.request_reload, replace_admin_token=replace_admin_token)
    if cfg.http.enabled:
        # The BitTorrent transport's torrents, seeders and swarms: seeders start on a host's first fetch.
        live.torrents = torrents.Torrents(cfg.state_dir)
        http = HttpServer(host=str(cfg.http.listen), port=cfg.http.port, boot_root=boot_root,
                          responder=responder, api=api, route_modules=api_route_modules(), limits=http_limits(cfg),
                          tls=tls_listener(cfg))
        services.append(http)
        rt.reconfigurers.append(Reconfigurer("http", lambda new: _prepare_http(http, cfg, new)))
    if cfg.tftp.enabled:
        # The PXE ROM's first fetch (undionly.kpxe / ipxe.efi / shimx64.efi); pxelinux.cfg/01-<mac> and
        # grub/grub.cfg-01-<mac> are rendered per machine.
        tftp = TftpServer(root=boot_root, port=cfg.tftp.port, dynamic=responder.tftp_config,
                          bind_device=cfg.appliance.interface, settings=cfg.tftp,
                          known=known_client(rt, leases))
        services.append(tftp)
        rt.reconfigurers.append(Reconfigurer("tftp", lambda new: _prepare_tftp(tftp, cfg, new)))
    if cfg.rsyncd.enabled:
        # The catalog is read from the store on every refresh: getimage (a separate process) commits a
        # row, WAL makes it visible here, and the next refresh exports it.
        def catalog() -> list[tuple[str, int, str]]:
            return [(v.name, v.version, v.path) for v in list_versions(rt.store.reader)]

        # Only machines installing (or updating, with a grant) may pull, each its own image, with its password.
        grants = live.rsync_grants
        if grants is None:
            grants = live.rsync_grants = RsyncGrants.empty()

        def clients() -> list[RsyncClient]:
            now = rt.clock()
            return installing_clients(rt.store.reader, now) + grants.active(now)

        rsyncd = RsyncdService(rsyncd_settings(cfg), catalog, clock=rt.clock, monotonic=rt.monotonic,
                               clients=clients, images_root=cfg.state_dir / "images",
                               satellites=lambda: satellites.rsync_credentials(rt.store.reader))
        live.rsync_refresh = rsyncd.refresh
        services.append(rsyncd)
        rt.reconfigurers.append(Reconfigurer("rsyncd", lambda new: _prepare_rsyncd(rsyncd, new)))
    if cfg.multicast.enabled:
        assert cfg.appliance.interface is not None  # the config requires it when multicast is on
        multicast = MulticastService(cfg.multicast, interface=cfg.appliance.interface, state_dir=cfg.state_dir,
                                     clock=rt.clock)
        live.multicast = multicast
        services.append(multicast)
    if cfg.dns.enabled:
        # Names come from the store on every query (rebuilt after each commit): no restart for a new host.
        dns = build_dns(rt)
        services.append(dns)
        rt.reconfigurers.append(Reconfigurer("dns", lambda new: prepare_dns(dns, new)))
    # Each host's last known power state (the host view): a bounded status poll of every BMC ([power]).
    services.append(PowerPoller(rt.store, lambda: live.power, clock=rt.clock))
    if cfg.satellite.primary:
        # The satellite role: mirror the primary's images and hosts, report installs back (buffered).
        services.append(build_link(cfg, rt.store, on_change=live.rsync_refresh))
    server: DhcpServer | None = None
    if cfg.dhcp.enabled:
        # Last: a client that gets an address can fetch its boot files at once.
        dhcp = build_dhcp(rt, leases, machines)
        dhcp.may_boot = discovery.may_boot if cfg.discovery.policy == "ignore" else None
        services.append(dhcp)
        server = dhcp
    # With DHCP off the lease book still takes the new pools (reservations are checked against them).
    rt.reconfigurers.append(Reconfigurer("dhcp", lambda new: _prepare_dhcp(leases, server, discovery, new)))
    return services


def _prepare_live(rt: Runtime, new: Config) -> Apply:
    """The settings the API, discovery, the machine log and the boot responder read."""
    install, hostbook, pools = install_settings(new), host_settings(new), pool_specs(new)
    boot = boot_settings(new)
    live = rt.live

    def apply() -> None:
        live.install, live.hostbook, live.pools = install, hostbook, pools
        live.admin_networks = tuple(new.http.admin_networks)
        live.loopback_tokens = new.http.loopback_tokens
        live.power = new.power
        live.audit_limits = (new.audit.max_entries, new.audit.max_age)
        if live.discovery is not None:
            live.discovery.settings, live.discovery.auto_static = new.discovery, new.dhcp.auto_static
        if live.machines is not None:  # a lower cap takes effect as new machines arrive
            live.machines.cap, live.machines.expiry = new.discovery.max_machines, new.discovery.machine_expiry
        if live.boot is not None:
            live.boot.settings = boot

    return apply


def _fixed_at_start(service: str, started: object, new: object, what: str) -> None:
    if started != new:
        raise ReconfigureError(service, f"{what} {started} -> {new} needs a restart (the socket is bound at start)")


def _prepare_http(http: HttpServer, started: Config, new: Config) -> Apply:
    _fixed_at_start("http", started.http.enabled, new.http.enabled, "http.enabled")
    _fixed_at_start("http", started.http.listen, new.http.listen, "http.listen")
    _fixed_at_start("http", started.http.port, new.http.port, "http.port")
    _fixed_at_start("http", started.https, new.https, "[https]")
    limits = http_limits(new)
    return lambda: http.reconfigure(limits)


def _prepare_tftp(tftp: TftpServer, started: Config, new: Config) -> Apply:
    _fixed_at_start("tftp", started.tftp.enabled, new.tftp.enabled, "tftp.enabled")
    _fixed_at_start("tftp", started.tftp.port, new.tftp.port, "tftp.port")
    return lambda: tftp.reconfigure(new.tftp)


def _prepare_rsyncd(rsyncd: RsyncdService, new: Config) -> Apply:
    allow = rsyncd_hosts_allow(new)
    return lambda: rsyncd.set_hosts_allow(allow)


def _prepare_dhcp(leases: LeaseModel, server: DhcpServer | None, discovery: Discovery, new: Config) -> Apply:
    change = prepare_dhcp(leases, server, new)

    def apply() -> None:
        change()
        if server is not None:
            server.may_boot = discovery.may_boot if new.discovery.policy == "ignore" else None

    return apply


async def reconfigure_services(rt: Runtime, new: Config) -> None:
    """Hand a re-read config to the running services: all or nothing. Every service first checks it and
    computes its new settings (nothing changes yet); if one refuses (ReconfigureError, or a bad value),
    the error names it and the running config stays whole. Then rt.config becomes `new` and every change
    is applied. Listening addresses and ports are fixed at start (a change is refused: restart)."""
    changes: list[Apply] = []
    for r in rt.reconfigurers:
        try:
            changes.append(r.prepare(new))
        except ReconfigureError:
            raise
        except (ValueError, LeaseError) as e:
            raise ReconfigureError(r.service, str(e)) from None
    rt.config = new
    for change in changes:
        result = change()
        if inspect.isawaitable(result):
            await result
