"""From the config to the DHCP server and its lease book (used by wiring and by the offline CLI)."""

from __future__ import annotations

import sqlite3

from appliance.config import ARM64_BOOT_FILES, UEFI_BOOT_FILES, Config, DhcpConfig
from appliance.daemon.rogue import refuse_pool
from appliance.daemon.runtime import Apply, ReconfigureError, Runtime
from protocols.dhcp.reply import BootSettings, ServerSettings, Subnet
from services.dhcp import DhcpServer
from state.hosts import hosts_among, is_host
from state.lease_pools import check_pools
from state.lease_rows import durable_binding
from state.lease_validators import LeaseError
from state.leases import LeaseModel
from state.sightings import MachineLog

# How often a machine's last_seen is written when nothing else about it changed.
MACHINE_REFRESH = 60.0


def subnets(cfg: Config) -> tuple[Subnet, ...]:
    return tuple(
        Subnet(network=s.subnet, pool_first=s.pool_first, pool_last=s.pool_last, router=s.router, dns=s.dns,
               domain=s.domain or cfg.appliance.domain, lease_time=s.lease_time)
        for s in cfg.dhcp.subnets
    )


def uefi_boot_file(cfg: Config) -> str:
    """What a UEFI x64 PXE ROM is told to load: [dhcp] uefi_file if set, else [boot] uefi_loader's file."""
    return cfg.dhcp.uefi_file or UEFI_BOOT_FILES[cfg.boot.uefi_loader]


def arm64_boot_file(cfg: Config) -> str:
    """What an arm64 UEFI machine is told to load: [dhcp] arm64_file if set, else [boot] arm64_loader's file."""
    return cfg.dhcp.arm64_file or ARM64_BOOT_FILES[cfg.boot.arm64_loader]


def boot_settings(cfg: Config) -> BootSettings:
    arm64 = arm64_boot_file(cfg)
    return BootSettings(http_port=cfg.http.port, bios_file=cfg.dhcp.bios_file, uefi_file=uefi_boot_file(cfg),
                        arm64_file=arm64, arm64_http_boot_url=f"http://{{server}}:{{port}}/boot/files/{arm64}")


def server_settings(cfg: Config) -> ServerSettings:
    d: DhcpConfig = cfg.dhcp
    assert cfg.appliance.address is not None, "config validation requires appliance.address with dhcp"
    return ServerSettings(
        server_id=cfg.appliance.address,
        mode=d.mode,
        subnets=subnets(cfg),
        boot=boot_settings(cfg),
        offer_hold=d.offer_hold,
        trusted_relays=d.trusted_relays,
    )


def _model_options(cfg: Config) -> dict[str, object]:
    # Never handed out or reserved: our own address and the routers and DNS servers we announce.
    infra = {a for s in cfg.dhcp.subnets for a in (s.router, *s.dns) if a is not None}
    if cfg.appliance.address is not None:
        infra.add(cfg.appliance.address)
    return {"offer_hold": cfg.dhcp.offer_hold, "decline_probation": float(cfg.dhcp.decline_probation),
            "decline_max_share": cfg.dhcp.decline_max_share, "excluded": sorted(infra)}


def load_leases(rt: Runtime) -> LeaseModel:
    """The live lease book, loaded from the store; its writes go through the journal (group commit)."""
    return LeaseModel.load(rt.store.reader, subnets(rt.config), rt.store.writeback,
                           now=rt.clock(), **_model_options(rt.config))  # type: ignore[arg-type]


def load_machines(rt: Runtime, cls: type[MachineLog] = MachineLog) -> MachineLog:
    """The live machine log, capped by [discovery] max_machines and machine_expiry; hosts are never evicted."""
    reader = rt.store.reader
    d = rt.config.discovery
    return cls.load(reader, rt.store.writeback, refresh=MACHINE_REFRESH, cap=d.max_machines,
                    expiry=d.machine_expiry, protected=lambda mac: is_host(reader, mac),
                    hosts_among=lambda macs: hosts_among(reader, macs),
                    now=rt.clock())


def offline_lease_model(cfg: Config, conn: sqlite3.Connection, now: float) -> LeaseModel:
    """A lease book over a plain connection, for CLI commands while the daemon is not running."""
    return LeaseModel.offline(conn, subnets(cfg), now=now, **_model_options(cfg))  # type: ignore[arg-type]


def build_dhcp(rt: Runtime, leases: LeaseModel, machines: MachineLog) -> DhcpServer:
    cfg = rt.config
    return DhcpServer(
        settings=server_settings(cfg), leases=leases, machines=machines, when_durable=rt.store.journal.when_durable,
        port=cfg.dhcp.port, interface=cfg.appliance.interface,
        conflict_probe=cfg.dhcp.conflict_probe and cfg.dhcp.mode == "authoritative",
        clock=rt.clock, monotonic=rt.monotonic,
        durable_binding=lambda mac: durable_binding(rt.store.reader, mac),
    )


def prepare_dhcp(leases: LeaseModel, server: DhcpServer | None, cfg: Config) -> Apply:
    """SIGHUP: new subnets, pools, options, hold and probation times (the leases themselves stay). Refused
    whole (ReconfigureError) if the pools overlap or [dhcp] mode changes (that needs a restart)."""
    new_subnets = subnets(cfg)
    try:
        check_pools(new_subnets)
    except LeaseError as e:
        raise ReconfigureError("dhcp", str(e)) from None
    settings = None
    if server is not None and cfg.dhcp.enabled:
        if cfg.dhcp.mode != server.settings.mode:
            raise ReconfigureError("dhcp", f"dhcp.mode {server.settings.mode!r} -> {cfg.dhcp.mode!r} needs a restart")
        settings = server_settings(cfg)
    d = cfg.dhcp

    def apply() -> None:
        leases.decline_probation = float(d.decline_probation)
        leases.decline_max_share = d.decline_max_share
        leases.offer_hold = d.offer_hold
        if server is not None and settings is not None:
            server.reconfigure(settings, conflict_probe=d.conflict_probe)
            server.refuse_pool = refuse_pool(cfg, server.other_servers)  # allow_rogue applies live
        else:
            leases.set_subnets(new_subnets)

    return apply
