"""The daemon's live models and settings the services and the HTTP routes share (one object, typed fields),
and the settings types of its own the routes read. Route modules import this; it imports no route module."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING

from domain.hostbook import AUTO_STATIC_DEFAULT, AutoStatic
from domain.installs import InstallSettings
from domain.settings import PowerConfig
from state import audit
from state.installs import LiveProgress
from state.installstats import InstallTally
from state.lease_pools import PoolSpec, SubnetLike
from state.leases import LeaseModel
from state.sightings import MachineLog

if TYPE_CHECKING:
    from ipaddress import IPv4Network

    from services.bootresponder import BootResponder
    from services.discovery import Discovery
    from services.multicast import MulticastService
    from services.torrents import Torrents
    from state.credentials import RsyncGrants


@dataclass(frozen=True, slots=True)
class HostSettings:
    """What host changes over the API check against (domain.hostbook)."""

    pools: tuple[SubnetLike, ...] = ()
    auto_static: AutoStatic = AUTO_STATIC_DEFAULT
    own_addresses: tuple[IPv4Address, ...] = ()
    domain: str | None = None


@dataclass(frozen=True, slots=True)
class ClientScripts:
    """Where GET /client/{name} reads its scripts (the appliance owns the packaged data)."""

    directory: Path
    names: tuple[str, ...] = ("prepareclient",)
    # A script's served bytes from its file (the appliance assembles some from shared parts).
    read: Callable[[Path], bytes] = Path.read_bytes


@dataclass(slots=True)
class Live:
    """The daemon's live models and settings shared by services and the API (one object, typed fields);
    the daemon replaces a setting on SIGHUP and every reader sees the new one."""

    leases: LeaseModel | None = None  # the DHCP lease book
    machines: MachineLog | None = None  # machines seen on the wire
    boot: BootResponder | None = None  # what a machine boots
    discovery: Discovery | None = None
    install: InstallSettings | None = None  # what install scripts say about the network
    hostbook: HostSettings | None = None  # what host changes check against
    admin_networks: tuple[IPv4Network, ...] = ()
    loopback_tokens: bool = True  # [http] loopback_tokens: role tokens over plain HTTP from loopback
    https_port: int | None = None  # [https] port when it is on (the dashboard sends the LAN there)
    # [audit] max_entries and max_age (state/audit.py): what the audit log keeps.
    audit_limits: tuple[int, float] = (audit.DEFAULT_MAX_ENTRIES, audit.DEFAULT_MAX_AGE)
    pools: tuple[PoolSpec, ...] = ()
    client_scripts: ClientScripts | None = None
    progress: LiveProgress = field(default_factory=LiveProgress)  # installers' newest byte counts
    installs: InstallTally = field(default_factory=InstallTally)  # /metrics: outcomes and durations
    rsync_grants: RsyncGrants | None = None
    rsync_refresh: Callable[[], None] | None = None
    multicast: MulticastService | None = None  # udpcast sessions ([multicast] enabled)
    image_problem: Callable[[str, int | None], str | None] | None = None  # getimage's installability rule
    torrents: Torrents | None = None  # BitTorrent: built torrents, seeders, swarms (services/torrents.py)
    power: PowerConfig = field(default_factory=PowerConfig)  # [power]: BMC calls' concurrency and timeout

    def install_settings(self) -> InstallSettings:
        return self.install or InstallSettings()

    def host_settings(self) -> HostSettings:
        return self.hostbook or HostSettings()
