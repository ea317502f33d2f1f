"""The config file's sections, each declared once: its keys, their defaults and their constraints.

Each section is the settings type of the service that takes it (the wiring passes it on as it is);
appliance/config.py reads the TOML document into them with msgspec and adds the checks between keys.
Constraints are declared on the fields: ranges (msgspec.Meta; `extra["unit"]` names the unit in error
messages), choices (Literal), and value types that check themselves (domain/config_values.py).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from domain.config_values import (
    AddressRange,
    AnyNetwork,
    BaseUrl,
    Bitrate,
    BootFileName,
    DnsName,
    Fingerprint,
    InterfaceName,
)
from domain.discovery import DiscoveryPolicy, DiscoveryRule
from domain.hostbook import AUTO_STATIC_DEFAULT, AutoStatic
from state import audit, outbox
from state.boot import UnknownBoot

SECONDS = {"unit": "seconds"}
SHARE = {"unit": "share"}

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Positive = Annotated[float, msgspec.Meta(gt=0)]


class Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A config table: unknown keys are refused, so a typo never falls back to a default silently."""


class ApplianceConfig(Section, frozen=True):
    state_dir: Path = Path("/var/lib/imageserver")
    interface: InterfaceName | None = None  # provisioning interface; None = not bound to a device
    address: IPv4Address | None = None  # our address on the provisioning network
    domain: DnsName = DnsName("cluster.local")
    hostname: DnsName = DnsName("imageserver")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # The daemon's event loop. uvloop spends less CPU per datagram (TFTP lock-step, DNS) but has no
    # loop.sendfile, so HTTP boot files go through userspace copies (a third of the throughput): not the default.
    event_loop: Literal["asyncio", "uvloop", "auto"] = "asyncio"


LeaseTime = Annotated[int, msgspec.Meta(ge=60, le=365 * 86400)]


class SubnetConfig(Section, frozen=True):
    subnet: IPv4Network
    pool: AddressRange
    router: IPv4Address | None = None
    dns: tuple[IPv4Address, ...] = ()
    lease_time: LeaseTime | None = None  # None: [dhcp] lease_time (the parser fills it in)
    domain: DnsName | None = None

    @property
    def pool_first(self) -> IPv4Address:
        return self.pool.first

    @property
    def pool_last(self) -> IPv4Address:
        return self.pool.last


class DhcpConfig(Section, frozen=True):
    enabled: bool | None = None  # None: on when [dhcp] subnet is given (the parser decides)
    mode: Literal["authoritative", "proxy"] = "authoritative"
    port: Port = 67
    # The provisioning subnet may be given inline ([dhcp] subnet/pool/router/dns/domain) and further
    # subnets behind relays as [[dhcp.subnets]]; the parser puts the inline one first in `subnets`.
    subnet: IPv4Network | None = None
    pool: AddressRange | None = None
    router: IPv4Address | None = None
    dns: tuple[IPv4Address, ...] = ()
    domain: DnsName | None = None
    subnets: tuple[SubnetConfig, ...] = ()
    lease_time: LeaseTime = 3600
    offer_hold: Positive = 30.0
    decline_probation: Annotated[int, msgspec.Meta(ge=0, le=86400 * 7)] = 600
    # At most this share of a pool is quarantined by DECLINEs (at least 1 address).
    decline_max_share: Annotated[float, msgspec.Meta(ge=0, le=1, extra=SHARE)] = 0.1
    conflict_probe: bool | None = None  # None: on in authoritative mode (the parser decides)
    auto_static: AutoStatic = AUTO_STATIC_DEFAULT
    bios_file: str = "undionly.kpxe"
    uefi_file: BootFileName | None = None  # None: the first file of [boot] uefi_loader (ipxe.efi, or shimx64.efi)
    arm64_file: BootFileName | None = None  # None: [boot] arm64_loader's file (grubaa64.efi, or shimaa64.efi)
    # Another DHCP server on the segment, found by a DISCOVER at start (its offers are awaited `rogue_probe`
    # seconds while we already serve; 0: no probe): authoritative mode then gives pool addresses to no new
    # machine unless allow_rogue is true.
    rogue_probe: Annotated[float, msgspec.Meta(ge=0, le=30, extra=SECONDS)] = 3.0
    allow_rogue: bool = False
    # The only relay agents whose giaddr is believed (addresses or networks); empty: none, every packet
    # with giaddr set is dropped (see protocols/dhcp/relay.py).
    trusted_relays: tuple[AnyNetwork, ...] = ()


TimeoutSeconds = Annotated[float, msgspec.Meta(ge=1, le=3600, extra=SECONDS)]


class TftpConfig(Section, frozen=True):
    enabled: bool = True
    port: Port = 69
    max_transfers: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 256
    # What one client address may hold (a stranger must not take every slot), the largest RFC 2349 timeout
    # option accepted (larger: the option is declined, our own retransmission timer applies), and how long a
    # transfer may go without progress before it is given up, whatever its timeout option.
    max_transfers_per_client: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 8
    max_timeout: Annotated[int, msgspec.Meta(ge=1, le=255)] = 5
    stall_timeout: TimeoutSeconds = 30.0


class HttpConfig(Section, frozen=True):
    enabled: bool = True
    listen: IPv4Address = IPv4Address("0.0.0.0")
    port: Port = 80
    # Connection caps (a stranger's idle connections must not exhaust descriptors): in total (also held
    # under half the open-file limit, counting two descriptors a connection), per client address; a
    # connection waiting for a request is closed after idle_timeout seconds without a byte, or
    # header_timeout seconds into an incomplete request.
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1000
    max_connections_per_client: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 32
    idle_timeout: TimeoutSeconds = 15.0
    header_timeout: TimeoutSeconds = 10.0
    # An answer the client takes no byte of for write_timeout seconds (it stopped reading) is cut: it
    # would hold its connection slot, socket and open file for ever.
    write_timeout: TimeoutSeconds = 30.0
    # Who may read the APIs that list MACs and addresses (hosts, leases, machines, ...): empty = anyone
    # (the behaviour before the key existed); /api/v1/status stays open. See services/adminnet.py.
    admin_networks: tuple[AnyNetwork, ...] = ()
    # An admin, operator or reader token over plain HTTP is refused (403, the token revoked: it crossed the
    # LAN in clear) unless it comes from loopback and this is true (the CLI on the appliance itself).
    loopback_tokens: bool = True


class HttpsConfig(Section, frozen=True):
    """[https]: the admin API and the dashboard over TLS (the same routes as [http]; PXE, boot scripts, the
    installer and updateclient stay on plain HTTP, where firmware needs them)."""

    enabled: bool = False  # `imageserver init` turns it on (and makes the certificate)
    listen: IPv4Address | None = None  # None: [http] listen
    port: Port = 443
    # The certificate (PEM, may carry its chain) and its key; unset: <state_dir>/tls/cert.pem and key.pem,
    # made self-signed by `imageserver init` or at the first start (the SHA-256 fingerprint is printed/logged).
    cert: Path | None = None
    key: Path | None = None


class DnsConfig(Section, frozen=True):
    enabled: bool = False
    port: Port = 53
    upstreams: tuple[IPv4Address, ...] = ()
    ttl: Annotated[int, msgspec.Meta(ge=0, le=86400)] = 60


class RsyncdConfig(Section, frozen=True):
    enabled: bool = True
    port: Port = 873
    # Who may pull images. Empty: the DHCP subnets (and loopback); images hold the master client's
    # secrets (/etc/shadow, host keys), so they are never exported to the world by default.
    hosts_allow: tuple[AnyNetwork, ...] = ()
    # Image transfers at once (0: no limit). Past it installers wait in line (stage "queued") rather
    # than share the link 500 ways; 32 keeps a 10 Gb/s link full with room for disk-bound clients.
    max_connections: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 32


class MulticastConfig(Section, frozen=True):
    # udpcast sessions for installs on one L2 segment (services/multicast.py); off unless asked for.
    enabled: bool = False
    portbase: Annotated[int, msgspec.Meta(ge=1024, le=65000)] = 9000  # even; session N uses portbase + 2N and +1
    rdv_address: IPv4Address = IPv4Address("239.255.77.1")  # where sender and receivers find each other
    max_sessions: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4
    max_receivers: Annotated[int, msgspec.Meta(ge=1, le=100000)] = 1024
    # Start this long after the first receiver joined, even if others are missing.
    start_window: TimeoutSeconds = 30.0
    min_wait: Annotated[float, msgspec.Meta(ge=0, le=3600, extra=SECONDS)] = 0.0
    # A session nobody joins gives up after this.
    start_timeout: Annotated[float, msgspec.Meta(ge=10, le=86400, extra=SECONDS)] = 300.0
    # The slow-receiver policy: a receiver this far behind is dropped (-> rsync).
    retries_until_drop: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 30
    max_bitrate: Bitrate | None = None  # e.g. "600m"


UefiLoader = Literal["ipxe", "shim"]
UEFI_BOOT_FILES: dict[UefiLoader, str] = {"ipxe": "ipxe.efi", "shim": "shimx64.efi"}  # -> the DHCP boot file
Arm64Loader = Literal["grub", "shim"]
# arm64 UEFI (arch 11, and 19 over HTTP): Debian has no arm64 iPXE; `mkbootenv --arch arm64` puts Debian's
# signed network GRUB (grub-efi-arm64-signed) and shim (shim-signed) into the boot root under these names
# (shim fetches grubaa64.efi from beside itself).
ARM64_BOOT_FILES: dict[Arm64Loader, str] = {"grub": "grubaa64.efi", "shim": "shimaa64.efi"}


class BootConfig(Section, frozen=True):
    # Where distro packages put the boot binaries (Debian paths); overridable per file.
    ipxe_dir: Path = Path("/usr/lib/ipxe")
    pxelinux: Path = Path("/usr/lib/PXELINUX/pxelinux.0")
    syslinux_modules: Path = Path("/usr/lib/syslinux/modules/bios")
    unknown: UnknownBoot = "wait"  # what an unknown machine boots: poll until assigned, or local
    poll_seconds: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 5
    kernel_cmdline: str = "console=tty0 console=ttyS0,115200"
    # How an iPXE machine is given its decision: "ipxe" (an iPXE script) or "pxelinux" (BIOS machines
    # chain pxelinux.0 over TFTP and read pxelinux.cfg/01-<mac>; UEFI machines still get the script).
    loader: Literal["ipxe", "pxelinux"] = "ipxe"
    # What a UEFI x64 PXE machine starts: "ipxe" (ipxe.efi, unsigned: Secure Boot must be off) or "shim"
    # (Debian's signed shim -> signed network GRUB -> grub/grub.cfg-01-<mac>; boots with Secure Boot on
    # or off). The files come from packages shim-signed and grub-efi-amd64-signed.
    uefi_loader: UefiLoader = "ipxe"
    shim: Path = Path("/usr/lib/shim/shimx64.efi.signed")
    grub_efi: Path = Path("/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed")
    # What an arm64 UEFI machine starts: "grub" (Debian's signed network GRUB; Secure Boot off, or firmware
    # that trusts Debian's key) or "shim" (signed shim first: firmware with Microsoft's keys enforcing).
    arm64_loader: Arm64Loader = "grub"


class DiscoveryConfig(Section, frozen=True):
    # What happens to a machine that is no host: "hold" (it waits until assigned), "auto" (it becomes a
    # host by the first matching rule), "ignore" (an address, never a boot). See domain/discovery.py.
    policy: DiscoveryPolicy = "hold"
    rules: tuple[DiscoveryRule, ...] = ()
    # A machine that waits for an assignment and has no hardware inventory yet boots the installer in
    # inspect mode once: it posts its inventory (machines show, rules on vendor/memory/disks, the BMC
    # address) and powers off, installing nothing. Off by default: a powered-off machine needs its BMC or
    # a hand to come back, where today it waits in its boot loop for the assignment.
    inspect: bool = False
    # Machine records (every MAC seen on the wire) are capped: unknown machines not seen for machine_expiry
    # seconds are forgotten, and at the cap the oldest unknown one makes room; hosts are never evicted.
    max_machines: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 4096
    machine_expiry: Annotated[float, msgspec.Meta(ge=60, le=365 * 86400, extra=SECONDS)] = 7 * 86400.0
    # policy "auto" creates at most auto_max_hosts hosts in all and auto_max_per_window per auto_window
    # seconds; beyond that unknown machines wait, as under "hold" (spoofed MACs must not mint hosts).
    auto_max_hosts: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 256
    auto_max_per_window: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 64
    auto_window: Annotated[float, msgspec.Meta(ge=1, le=30 * 86400, extra=SECONDS)] = 3600.0


class SatelliteLinkConfig(Section, frozen=True):
    """[satellite]: this appliance as a satellite of a primary (services/satellite.py's link)."""

    # The primary appliance this one mirrors (its HTTP base URL); empty: not a satellite.
    primary: BaseUrl = BaseUrl("")
    # The primary's certificate, pinned (https:// primary): its SHA-256 fingerprint as `imageserver init` on
    # the primary printed it. A primary showing another certificate is refused (no sync, the reason logged).
    # Unset with an https:// primary: the system's CAs must trust its certificate.
    primary_fingerprint: Fingerprint | None = None
    # The token `imageserver satellites add NAME` printed on the primary (kept out of the config file,
    # which is world-readable on many systems). Default: <state_dir>/satellite.token.
    token_file: Path | None = None
    interval: TimeoutSeconds = 10.0  # seconds between syncs (mirror, host list, reports)
    outbox_cap: Annotated[int, msgspec.Meta(ge=100, le=10_000_000)] = outbox.DEFAULT_CAP  # reports kept while away

    @property
    def max_interval(self) -> float:
        """While the primary is away: back off to twelve intervals (at most two minutes) between tries."""
        return min(120.0, max(self.interval, 12 * self.interval))


class PowerConfig(Section, frozen=True):
    """[power]: calls to the hosts' BMCs (services/power/)."""

    # BMCs called at once by one power command (more wait their turn): bounds the processes and sockets.
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 32
    # Seconds one host's action may take (every BMC call of it, and the wait for on/off to land).
    timeout: Annotated[float, msgspec.Meta(ge=1, le=600, extra=SECONDS)] = 20.0
    # Seconds between two rounds of the power poll (status of every host with a BMC, `concurrency` at a
    # time): the host view's power state. 0: no poll (the state comes from power commands only).
    poll: Annotated[float, msgspec.Meta(ge=0, le=86400, extra=SECONDS)] = 300.0


class AuditConfig(Section, frozen=True):
    """[audit]: the log of changes made through the admin API and the offline CLI (state/audit.py)."""

    # Entries kept: beyond max_entries the oldest go, and any older than max_age seconds.
    max_entries: Annotated[int, msgspec.Meta(ge=100, le=100_000_000)] = audit.DEFAULT_MAX_ENTRIES
    max_age: Annotated[float, msgspec.Meta(ge=86400, le=100 * 365 * 86400, extra=SECONDS)] = audit.DEFAULT_MAX_AGE
