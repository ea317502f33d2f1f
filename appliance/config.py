"""The imageserver's TOML configuration: typed, validated, with errors that name the key.

Every section is a frozen dataclass; `load_config` returns a `Config` or raises `ConfigError`
whose message starts with the dotted key path (e.g. ``dhcp.pool: 10.0.0.300 is not an IPv4 address``).
Unknown keys are errors too, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, TypeVar

from protocols.names import is_dns_name
from state.discovery import POLICIES, DiscoveryError, DiscoveryRule, check_pattern, normalize_mac_prefix

T = TypeVar("T")

DEFAULT_CONFIG_PATH = Path("/etc/imageserver/imageserver.toml")


class ConfigError(ValueError):
    """A configuration problem; str() is 'key.path: what is wrong'."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


@dataclass(frozen=True, slots=True)
class ApplianceConfig:
    state_dir: Path = Path("/var/lib/imageserver")
    interface: str | None = None  # provisioning interface; None = not bound to a device
    address: IPv4Address | None = None  # our address on the provisioning network
    domain: str = "cluster.local"
    hostname: str = "imageserver"
    log_level: str = "info"


@dataclass(frozen=True, slots=True)
class SubnetConfig:
    subnet: IPv4Network
    pool_first: IPv4Address
    pool_last: IPv4Address
    router: IPv4Address | None
    dns: tuple[IPv4Address, ...]
    lease_time: int
    domain: str | None = None


@dataclass(frozen=True, slots=True)
class DhcpConfig:
    enabled: bool = False
    mode: str = "authoritative"  # "authoritative" | "proxy"
    port: int = 67
    subnets: tuple[SubnetConfig, ...] = ()
    lease_time: int = 3600
    offer_hold: float = 30.0
    decline_probation: int = 600
    decline_max_share: float = 0.1  # at most this share of a pool is quarantined by DECLINEs (at least 1 address)
    conflict_probe: bool = True
    auto_static: str = "on-install"  # "on-install" | "on-assign" | "off"
    bios_file: str = "undionly.kpxe"
    uefi_file: str | None = None  # None: the first file of [boot] uefi_loader (ipxe.efi, or shimx64.efi)
    # Another DHCP server on the segment, found by a DISCOVER at start (its offers are awaited `rogue_probe`
    # seconds while we already serve; 0: no probe): authoritative mode then gives pool addresses to no new
    # machine unless allow_rogue is true.
    rogue_probe: float = 3.0
    allow_rogue: bool = False
    # Relay agents whose giaddr is believed (addresses or networks); empty: any packet that looks relayed
    # (see protocols/dhcp/relay.py).
    trusted_relays: tuple[IPv4Network, ...] = ()


@dataclass(frozen=True, slots=True)
class TftpConfig:
    enabled: bool = True
    port: int = 69
    max_transfers: int = 256
    # What one client address may hold (a stranger must not take every slot), the largest RFC 2349 timeout
    # option accepted (larger: the option is declined, our own retransmission timer applies), and how long a
    # transfer may go without progress before it is given up, whatever its timeout option.
    max_transfers_per_client: int = 8
    max_timeout: int = 5
    stall_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class HttpConfig:
    enabled: bool = True
    listen: IPv4Address = IPv4Address("0.0.0.0")
    port: int = 80
    # Connection caps (a stranger's idle connections must not exhaust descriptors): in total (also held
    # under half the open-file limit), per client address; a connection waiting for a request is closed
    # after idle_timeout seconds without a byte, or header_timeout seconds into an incomplete request.
    max_connections: int = 1000
    max_connections_per_client: int = 32
    idle_timeout: float = 15.0
    header_timeout: float = 10.0
    # Who may read the APIs that list MACs and addresses (hosts, leases, machines, ...): empty = anyone
    # (the behaviour before the key existed); /api/v1/status stays open. See services/adminnet.py.
    admin_networks: tuple[IPv4Network, ...] = ()


@dataclass(frozen=True, slots=True)
class DnsConfig:
    enabled: bool = False
    port: int = 53
    upstreams: tuple[IPv4Address, ...] = ()
    ttl: int = 60


@dataclass(frozen=True, slots=True)
class RsyncdConfig:
    enabled: bool = True
    port: int = 873
    # Who may pull images. Empty: the DHCP subnets (and loopback); images hold the master client's
    # secrets (/etc/shadow, host keys), so they are never exported to the world by default.
    hosts_allow: tuple[IPv4Network, ...] = ()
    # Image transfers at once (0: no limit). Past it installers wait in line (stage "queued") rather
    # than share the link 500 ways; 32 keeps a 10 Gb/s link full with room for disk-bound clients.
    max_connections: int = 32


@dataclass(frozen=True, slots=True)
class MulticastConfig:
    # udpcast sessions for installs on one L2 segment (services/multicast.py); off unless asked for.
    enabled: bool = False
    portbase: int = 9000  # even; session N uses portbase + 2N and the next port
    rdv_address: IPv4Address = IPv4Address("239.255.77.1")  # where sender and receivers find each other
    max_sessions: int = 4
    max_receivers: int = 1024
    start_window: float = 30.0  # start this long after the first receiver joined, even if others are missing
    min_wait: float = 0.0
    start_timeout: float = 300.0  # a session nobody joins gives up after this
    retries_until_drop: int = 30  # the slow-receiver policy: a receiver this far behind is dropped (-> rsync)
    max_bitrate: str | None = None  # e.g. "600m"


UEFI_LOADERS = ("ipxe", "shim")
UEFI_BOOT_FILES = {"ipxe": "ipxe.efi", "shim": "shimx64.efi"}  # [boot] uefi_loader -> the DHCP boot file


@dataclass(frozen=True, slots=True)
class BootConfig:
    # Where distro packages put the boot binaries (Debian paths); overridable per file.
    ipxe_dir: Path = Path("/usr/lib/ipxe")
    pxelinux: Path = Path("/usr/lib/PXELINUX/pxelinux.0")
    syslinux_modules: Path = Path("/usr/lib/syslinux/modules/bios")
    unknown: str = "wait"  # what an unknown machine boots: "wait" (poll until assigned) | "local"
    poll_seconds: int = 5
    kernel_cmdline: str = "console=tty0 console=ttyS0,115200"
    # How an iPXE machine is given its decision: "ipxe" (an iPXE script) or "pxelinux" (BIOS machines
    # chain pxelinux.0 over TFTP and read pxelinux.cfg/01-<mac>; UEFI machines still get the script).
    loader: str = "ipxe"
    # What a UEFI x64 PXE machine starts: "ipxe" (ipxe.efi, unsigned: Secure Boot must be off) or "shim"
    # (Debian's signed shim -> signed network GRUB -> grub/grub.cfg-01-<mac>; boots with Secure Boot on
    # or off). The files come from packages shim-signed and grub-efi-amd64-signed.
    uefi_loader: str = "ipxe"
    shim: Path = Path("/usr/lib/shim/shimx64.efi.signed")
    grub_efi: Path = Path("/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed")


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    # What happens to a machine that is no host: "hold" (it waits until assigned), "auto" (it becomes a
    # host by the first matching rule), "ignore" (an address, never a boot). See state/discovery.py.
    policy: str = "hold"
    rules: tuple[DiscoveryRule, ...] = ()
    # Machine records (every MAC seen on the wire) are capped: unknown machines not seen for machine_expiry
    # seconds are forgotten, and at the cap the oldest unknown one makes room; hosts are never evicted.
    max_machines: int = 4096
    machine_expiry: float = 7 * 86400.0
    # policy "auto" creates at most auto_max_hosts hosts in all and auto_max_per_window per auto_window
    # seconds; beyond that unknown machines wait, as under "hold" (spoofed MACs must not mint hosts).
    auto_max_hosts: int = 256
    auto_max_per_window: int = 64
    auto_window: float = 3600.0


@dataclass(frozen=True, slots=True)
class SatelliteConfig:
    # The primary appliance this one mirrors (its HTTP base URL); empty: not a satellite.
    primary: str = ""
    # The token `imageserver satellites add NAME` printed on the primary (kept out of the config file,
    # which is world-readable on many systems). Default: <state_dir>/satellite.token.
    token_file: Path | None = None
    interval: float = 10.0      # seconds between syncs (mirror, host list, reports)
    outbox_cap: int = 100_000   # install reports buffered while the primary is away


@dataclass(frozen=True, slots=True)
class Config:
    appliance: ApplianceConfig = field(default_factory=ApplianceConfig)
    dhcp: DhcpConfig = field(default_factory=DhcpConfig)
    tftp: TftpConfig = field(default_factory=TftpConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    boot: BootConfig = field(default_factory=BootConfig)
    rsyncd: RsyncdConfig = field(default_factory=RsyncdConfig)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    multicast: MulticastConfig = field(default_factory=MulticastConfig)
    satellite: SatelliteConfig = field(default_factory=SatelliteConfig)
    source: Path | None = None  # the file it was read from

    @property
    def state_dir(self) -> Path:
        return self.appliance.state_dir


# --- small typed readers; each names the key it reads ------------------------------------------

class _Table:
    """A TOML table being read: remembers which keys were used so leftovers can be reported."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(path, f"expected a table, got {type(data).__name__}")
        self.data: dict[str, Any] = data
        self.path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, conv: Callable[[str, Any], T], default: T) -> T:
        self.used.add(name)
        if name not in self.data:
            return default
        return conv(self.key(name), self.data[name])

    def require(self, name: str, conv: Callable[[str, Any], T]) -> T:
        self.used.add(name)
        if name not in self.data:
            raise ConfigError(self.key(name), "is required")
        return conv(self.key(name), self.data[name])

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(self.key(unknown[0]), "unknown key (check the spelling; see examples/imageserver.toml)")


def _bool(key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(key, f"expected true or false, got {v!r}")
    return v


def _int_range(lo: int, hi: int) -> Callable[[str, Any], int]:
    def conv(key: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(key, f"expected an integer, got {v!r}")
        if not lo <= v <= hi:
            raise ConfigError(key, f"{v} is out of range ({lo}..{hi})")
        return v

    return conv


def _float_pos(key: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
        raise ConfigError(key, f"expected a positive number, got {v!r}")
    return float(v)


def _seconds(lo: float, hi: float) -> Callable[[str, Any], float]:
    def conv(key: str, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ConfigError(key, f"expected a number of seconds, got {v!r}")
        if not lo <= v <= hi:
            raise ConfigError(key, f"{v} is out of range ({lo:g}..{hi:g} seconds)")
        return float(v)

    return conv


def _share(key: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
        raise ConfigError(key, f"expected a share from 0 to 1 (0.1 is 10 %), got {v!r}")
    return float(v)


def _str(key: str, v: Any) -> str:
    if not isinstance(v, str):
        raise ConfigError(key, f"expected a string, got {v!r}")
    return v


def _choice(*choices: str) -> Callable[[str, Any], str]:
    def conv(key: str, v: Any) -> str:
        s = _str(key, v)
        if s not in choices:
            raise ConfigError(key, f"{s!r} is not one of {', '.join(repr(c) for c in choices)}")
        return s

    return conv


def _ip(key: str, v: Any) -> IPv4Address:
    try:
        return IPv4Address(_str(key, v))
    except ValueError:
        raise ConfigError(key, f"{v!r} is not an IPv4 address") from None


def _ip_list(key: str, v: Any) -> tuple[IPv4Address, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list):
        raise ConfigError(key, f"expected a list of IPv4 addresses, got {v!r}")
    return tuple(_ip(f"{key}[{i}]", x) for i, x in enumerate(v))


def _network(key: str, v: Any) -> IPv4Network:
    try:
        return IPv4Network(_str(key, v), strict=True)
    except ValueError as e:
        raise ConfigError(key, f"{v!r} is not an IPv4 network in CIDR form ({e})") from None


def _path(key: str, v: Any) -> Path:
    s = _str(key, v)
    if not s:
        raise ConfigError(key, "must not be empty")
    return Path(s)


def _hostname(key: str, v: Any) -> str:
    s = _str(key, v).strip(".").lower()
    if not is_dns_name(s):  # protocols.names: the one rule for names
        raise ConfigError(key, f"{v!r} is not a valid DNS name")
    return s


def _pool(key: str, v: Any) -> tuple[IPv4Address, IPv4Address]:
    s = _str(key, v)
    first, sep, last = s.partition("-")
    if not sep:
        raise ConfigError(key, f"{s!r}: expected 'first-last', e.g. '10.0.0.100-10.0.0.199'")
    a, b = _ip(key, first.strip()), _ip(key, last.strip())
    if a > b:
        raise ConfigError(key, f"{s!r}: the first address is after the last")
    return a, b


# --- sections -------------------------------------------------------------------------------------

def _appliance(t: _Table) -> ApplianceConfig:
    d = ApplianceConfig()
    iface = t.get("interface", _str, "") or None
    if iface is not None and (len(iface) > 15 or "/" in iface or " " in iface):
        raise ConfigError(t.key("interface"), f"{iface!r} is not a network interface name")
    out = ApplianceConfig(
        state_dir=t.get("state_dir", _path, d.state_dir),
        interface=iface,
        address=t.get("address", _ip, None),
        domain=t.get("domain", _hostname, d.domain),
        hostname=t.get("hostname", _hostname, d.hostname),
        log_level=t.get("log_level", _choice("debug", "info", "warning", "error"), d.log_level),
    )
    t.finish()
    return out


def _subnet(t: _Table, lease_time: int, defaults: dict[str, Any] | None = None) -> SubnetConfig:
    net = t.require("subnet", _network)
    first, last = t.require("pool", _pool)
    for name, ip in (("pool", first), ("pool", last)):
        if ip not in net:
            raise ConfigError(t.key(name), f"{ip} is outside subnet {net}")
    if first in (net.network_address, net.broadcast_address) or last in (net.network_address,
                                                                         net.broadcast_address):
        raise ConfigError(t.key("pool"), "must not include the network or broadcast address")
    router = t.get("router", _ip, None)
    if router is not None and router not in net:
        raise ConfigError(t.key("router"), f"{router} is outside subnet {net}")
    out = SubnetConfig(
        subnet=net,
        pool_first=first,
        pool_last=last,
        router=router,
        dns=t.get("dns", _ip_list, ()),
        lease_time=t.get("lease_time", _int_range(60, 365 * 86400), lease_time),
        domain=t.get("domain", _hostname, None),
    )
    t.finish()
    return out


def _dhcp(t: _Table, appliance: ApplianceConfig) -> DhcpConfig:
    d = DhcpConfig()
    enabled = t.get("enabled", _bool, "subnet" in t.data)
    mode = t.get("mode", _choice("authoritative", "proxy"), d.mode)
    lease_time = t.get("lease_time", _int_range(60, 365 * 86400), d.lease_time)
    subnets: list[SubnetConfig] = []
    # The provisioning subnet may be given inline ([dhcp] subnet/pool/router/dns) ...
    inline_keys = {"subnet", "pool", "router", "dns", "domain"}
    if inline_keys & set(t.data):
        inline = {k: t.data[k] for k in inline_keys if k in t.data}
        t.used.update(inline_keys)
        if "lease_time" in t.data:
            inline["lease_time"] = lease_time
        subnets.append(_subnet(_Table(inline, t.path), lease_time))
    # ... and further subnets behind relays as [[dhcp.subnets]].
    extra = t.get("subnets", lambda k, v: v, [])
    if not isinstance(extra, list):
        raise ConfigError(t.key("subnets"), "expected an array of tables ([[dhcp.subnets]])")
    for i, item in enumerate(extra):
        subnets.append(_subnet(_Table(item, f"{t.key('subnets')}[{i}]"), lease_time))
    for i, a in enumerate(subnets):
        for b in subnets[i + 1:]:
            if a.subnet.overlaps(b.subnet):
                raise ConfigError(t.key("subnets"), f"subnets {a.subnet} and {b.subnet} overlap")
    out = DhcpConfig(
        enabled=enabled,
        mode=mode,
        port=t.get("port", _int_range(1, 65535), d.port),
        subnets=tuple(subnets),
        lease_time=lease_time,
        offer_hold=t.get("offer_hold", _float_pos, d.offer_hold),
        decline_probation=t.get("decline_probation", _int_range(0, 86400 * 7), d.decline_probation),
        decline_max_share=t.get("decline_max_share", _share, d.decline_max_share),
        conflict_probe=t.get("conflict_probe", _bool, mode == "authoritative"),
        auto_static=t.get("auto_static", _choice("on-install", "on-assign", "off"), d.auto_static),
        bios_file=t.get("bios_file", _str, d.bios_file),
        uefi_file=t.get("uefi_file", _str, "") or None,
        rogue_probe=t.get("rogue_probe", _seconds(0.0, 30.0), d.rogue_probe),
        allow_rogue=t.get("allow_rogue", _bool, d.allow_rogue),
        trusted_relays=t.get("trusted_relays", _network_list, d.trusted_relays),
    )
    t.finish()
    if out.enabled:
        if appliance.address is None:
            raise ConfigError("appliance.address", "is required when dhcp is enabled (it is the server id)")
        if out.mode == "authoritative" and not out.subnets:
            raise ConfigError(t.key("subnet"), "authoritative DHCP needs a subnet and a pool")
        if out.subnets and not any(appliance.address in s.subnet for s in out.subnets) and out.mode != "proxy":
            raise ConfigError("appliance.address",
                              f"{appliance.address} is in none of the DHCP subnets "
                              f"({', '.join(str(s.subnet) for s in out.subnets)})")
        for s in out.subnets:
            if s.pool_first <= appliance.address <= s.pool_last:
                raise ConfigError(t.key("pool"), f"the pool contains the imageserver's own address {appliance.address}")
    return out


def _tftp(t: _Table) -> TftpConfig:
    d = TftpConfig()
    out = TftpConfig(
        enabled=t.get("enabled", _bool, d.enabled),
        port=t.get("port", _int_range(1, 65535), d.port),
        max_transfers=t.get("max_transfers", _int_range(1, 10000), d.max_transfers),
        max_transfers_per_client=t.get("max_transfers_per_client", _int_range(1, 10000),
                                       d.max_transfers_per_client),
        max_timeout=t.get("max_timeout", _int_range(1, 255), d.max_timeout),
        stall_timeout=t.get("stall_timeout", _seconds(1.0, 3600.0), d.stall_timeout),
    )
    t.finish()
    return out


def _http(t: _Table) -> HttpConfig:
    d = HttpConfig()
    out = HttpConfig(
        enabled=t.get("enabled", _bool, d.enabled),
        listen=t.get("listen", _ip, d.listen),
        port=t.get("port", _int_range(1, 65535), d.port),
        max_connections=t.get("max_connections", _int_range(1, 1_000_000), d.max_connections),
        max_connections_per_client=t.get("max_connections_per_client", _int_range(1, 1_000_000),
                                         d.max_connections_per_client),
        idle_timeout=t.get("idle_timeout", _seconds(1.0, 3600.0), d.idle_timeout),
        header_timeout=t.get("header_timeout", _seconds(1.0, 3600.0), d.header_timeout),
        admin_networks=t.get("admin_networks", _network_list, d.admin_networks),
    )
    t.finish()
    return out


def _dns(t: _Table) -> DnsConfig:
    d = DnsConfig()
    out = DnsConfig(
        enabled=t.get("enabled", _bool, d.enabled),
        port=t.get("port", _int_range(1, 65535), d.port),
        upstreams=t.get("upstreams", _ip_list, d.upstreams),
        ttl=t.get("ttl", _int_range(0, 86400), d.ttl),
    )
    t.finish()
    return out


def _network_list(key: str, v: Any) -> tuple[IPv4Network, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list):
        raise ConfigError(key, f"expected a list of IPv4 networks, got {v!r}")
    out = []
    for i, x in enumerate(v):
        try:
            out.append(IPv4Network(_str(f"{key}[{i}]", x), strict=False))
        except ValueError:
            raise ConfigError(f"{key}[{i}]", f"{x!r} is not an IPv4 address or network") from None
    return tuple(out)


def _rsyncd(t: _Table) -> RsyncdConfig:
    d = RsyncdConfig()
    out = RsyncdConfig(
        enabled=t.get("enabled", _bool, d.enabled),
        port=t.get("port", _int_range(1, 65535), d.port),
        hosts_allow=t.get("hosts_allow", _network_list, d.hosts_allow),
        max_connections=t.get("max_connections", _int_range(0, 10_000), d.max_connections),
    )
    t.finish()
    return out


def _boot(t: _Table) -> BootConfig:
    d = BootConfig()
    out = BootConfig(
        ipxe_dir=t.get("ipxe_dir", _path, d.ipxe_dir),
        pxelinux=t.get("pxelinux", _path, d.pxelinux),
        syslinux_modules=t.get("syslinux_modules", _path, d.syslinux_modules),
        unknown=t.get("unknown", _choice("wait", "local"), d.unknown),
        poll_seconds=t.get("poll_seconds", _int_range(1, 3600), d.poll_seconds),
        kernel_cmdline=t.get("kernel_cmdline", _str, d.kernel_cmdline),
        loader=t.get("loader", _choice("ipxe", "pxelinux"), d.loader),
        uefi_loader=t.get("uefi_loader", _choice(*UEFI_LOADERS), d.uefi_loader),
        shim=t.get("shim", _path, d.shim),
        grub_efi=t.get("grub_efi", _path, d.grub_efi),
    )
    t.finish()
    return out


def _discovery_rule(t: _Table) -> DiscoveryRule:
    def pattern(key: str, v: Any) -> str:
        try:
            return check_pattern(_str(key, v))
        except DiscoveryError as e:
            raise ConfigError(key, str(e)) from None

    def mac_prefix(key: str, v: Any) -> str:
        try:
            return normalize_mac_prefix(_str(key, v))
        except DiscoveryError as e:
            raise ConfigError(key, str(e)) from None

    def image(key: str, v: Any) -> str:
        s = _str(key, v)
        if not s or "/" in s or s.startswith("."):
            raise ConfigError(key, f"{v!r} is not an image name")
        return s

    out = DiscoveryRule(
        hostname=t.require("hostname", pattern),
        image=t.require("image", image),
        version=t.get("version", _int_range(1, 1 << 30), None),
        mac_prefix=t.get("mac_prefix", mac_prefix, None),
        arch=t.get("arch", _int_range(0, 65535), None),
        vendor_class=t.get("vendor_class", _str, None),
    )
    t.finish()
    return out


def _discovery(t: _Table) -> DiscoveryConfig:
    d = DiscoveryConfig()
    policy = t.get("policy", _choice(*POLICIES), d.policy)
    raw = t.get("rules", lambda k, v: v, [])
    if not isinstance(raw, list):
        raise ConfigError(t.key("rules"), "expected an array of tables ([[discovery.rules]])")
    rules = tuple(_discovery_rule(_Table(item, f"{t.key('rules')}[{i}]")) for i, item in enumerate(raw))
    max_machines = t.get("max_machines", _int_range(1, 10_000_000), d.max_machines)
    machine_expiry = t.get("machine_expiry", _seconds(60.0, 365 * 86400.0), d.machine_expiry)
    auto_max_hosts = t.get("auto_max_hosts", _int_range(0, 1_000_000), d.auto_max_hosts)
    auto_max_per_window = t.get("auto_max_per_window", _int_range(0, 1_000_000), d.auto_max_per_window)
    auto_window = t.get("auto_window", _seconds(1.0, 30 * 86400.0), d.auto_window)
    t.finish()
    if policy == "auto" and not rules:
        raise ConfigError(t.key("rules"), 'policy "auto" needs at least one [[discovery.rules]] '
                                          '(hostname pattern and image)')
    return DiscoveryConfig(policy=policy, rules=rules, max_machines=max_machines, machine_expiry=machine_expiry,
                           auto_max_hosts=auto_max_hosts, auto_max_per_window=auto_max_per_window,
                           auto_window=auto_window)


_BITRATE = re.compile(r"^[1-9][0-9]{0,5}[kmg]?$")


def _bitrate(key: str, v: Any) -> str:
    text = _str(key, v).lower()
    if not _BITRATE.match(text):
        raise ConfigError(key, f"{v!r} is not a bit rate such as 600m, 80000k or 1g")
    return text


def _multicast(t: _Table, appliance: ApplianceConfig) -> MulticastConfig:
    d = MulticastConfig()
    portbase = t.get("portbase", _int_range(1024, 65000), d.portbase)
    if portbase % 2:
        raise ConfigError(t.key("portbase"), f"{portbase} must be even (udpcast uses it and the next port)")
    out = MulticastConfig(
        enabled=t.get("enabled", _bool, d.enabled),
        portbase=portbase,
        rdv_address=t.get("rdv_address", _ip, d.rdv_address),
        max_sessions=t.get("max_sessions", _int_range(1, 64), d.max_sessions),
        max_receivers=t.get("max_receivers", _int_range(1, 100000), d.max_receivers),
        start_window=t.get("start_window", _seconds(1.0, 3600.0), d.start_window),
        min_wait=t.get("min_wait", _seconds(0.0, 3600.0), d.min_wait),
        start_timeout=t.get("start_timeout", _seconds(10.0, 86400.0), d.start_timeout),
        retries_until_drop=t.get("retries_until_drop", _int_range(1, 10000), d.retries_until_drop),
        max_bitrate=t.get("max_bitrate", _bitrate, d.max_bitrate),
    )
    t.finish()
    if not out.rdv_address.is_multicast:
        raise ConfigError(t.key("rdv_address"), f"{out.rdv_address} is not a multicast address")
    if out.enabled and appliance.interface is None:
        raise ConfigError("appliance.interface", "is required when multicast is enabled (udpcast sends on it)")
    return out


def _satellite(t: _Table) -> SatelliteConfig:
    d = SatelliteConfig()

    def url(key: str, v: Any) -> str:
        text = _str(key, v).rstrip("/")
        if text and not re.fullmatch(r"https?://[A-Za-z0-9.:\[\]-]+(?::\d+)?", text):
            raise ConfigError(key, f"{text!r} is not an http:// or https:// base URL (e.g. \"http://10.0.0.1\")")
        return text

    out = SatelliteConfig(
        primary=t.get("primary", url, d.primary),
        token_file=t.get("token_file", _path, d.token_file),
        interval=t.get("interval", _seconds(1.0, 3600.0), d.interval),
        outbox_cap=t.get("outbox_cap", _int_range(100, 10_000_000), d.outbox_cap),
    )
    t.finish()
    return out


def parse_config(data: dict[str, Any], source: Path | None = None) -> Config:
    """Validate a parsed TOML document; raises ConfigError naming the first bad key."""
    top = _Table(data, "")
    appliance = _appliance(_Table(top.get("appliance", lambda k, v: v, {}), "appliance"))
    cfg = Config(
        appliance=appliance,
        dhcp=_dhcp(_Table(top.get("dhcp", lambda k, v: v, {}), "dhcp"), appliance),
        tftp=_tftp(_Table(top.get("tftp", lambda k, v: v, {}), "tftp")),
        http=_http(_Table(top.get("http", lambda k, v: v, {}), "http")),
        dns=_dns(_Table(top.get("dns", lambda k, v: v, {}), "dns")),
        boot=_boot(_Table(top.get("boot", lambda k, v: v, {}), "boot")),
        rsyncd=_rsyncd(_Table(top.get("rsyncd", lambda k, v: v, {}), "rsyncd")),
        discovery=_discovery(_Table(top.get("discovery", lambda k, v: v, {}), "discovery")),
        multicast=_multicast(_Table(top.get("multicast", lambda k, v: v, {}), "multicast"), appliance),
        satellite=_satellite(_Table(top.get("satellite", lambda k, v: v, {}), "satellite")),
        source=source,
    )
    top.finish()
    return cfg


def load_config(path: Path) -> Config:
    """Read and validate a config file; every failure is a ConfigError with a clear message."""
    try:
        raw = _read_config_file(path)
    except FileNotFoundError:
        raise ConfigError("", f"{path}: no such file (see examples/imageserver.toml)") from None
    except OSError as e:
        raise ConfigError("", f"{path}: cannot read: {e.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("", f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("", f"{path}: TOML syntax error: {e}") from None
    return parse_config(data, source=path)


# A config file is a few KiB; anything near this is not one (and must not be read into memory whole).
MAX_CONFIG_BYTES = 1 << 20


def _read_config_file(path: Path) -> bytes:
    """The file's bytes, refusing what is not a regular file (a FIFO would block SIGHUP's reload for ever,
    /dev/zero would eat memory) or is larger than MAX_CONFIG_BYTES. Opened non-blocking so a FIFO
    cannot hang the open itself; checked on the open descriptor, so a swap after the check cannot fool it."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError("", f"{path}: not a regular file ({_file_kind(st.st_mode)}); refusing to read it")
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError("", f"{path}: {st.st_size} bytes, larger than the {MAX_CONFIG_BYTES} a config "
                                  "file may be; refusing to read it")
        os.set_blocking(fd, True)
        with os.fdopen(os.dup(fd), "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_CONFIG_BYTES:  # grew while we read it
        raise ConfigError("", f"{path}: larger than the {MAX_CONFIG_BYTES} bytes a config file may be")
    return raw


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"
