"""The imageserver's TOML configuration: typed, validated, with errors that name the key.

The sections and their keys are declared once, in domain/settings.py (each is the settings type of the
service that takes it); this module composes them into the document, reads it (appliance/config_reader.py:
msgspec, and errors in our words) and adds the checks between keys. Every failure is a ConfigError whose
message starts with the dotted key path (e.g. ``dhcp.pool: 10.0.0.300 is not an IPv4 address``). Unknown
keys are errors too, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from appliance.config_reader import ConfigError, read
from domain.discovery import DiscoveryRule
from domain.settings import (
    ARM64_BOOT_FILES,
    UEFI_BOOT_FILES,
    ApplianceConfig,
    AuditConfig,
    BootConfig,
    DhcpConfig,
    DiscoveryConfig,
    DnsConfig,
    HttpConfig,
    HttpsConfig,
    MulticastConfig,
    PowerConfig,
    RsyncdConfig,
    SatelliteLinkConfig,
    SubnetConfig,
    TftpConfig,
)

__all__ = ["ARM64_BOOT_FILES", "DEFAULT_CONFIG_PATH", "UEFI_BOOT_FILES", "ApplianceConfig", "BootConfig", "Config",
           "ConfigError", "DhcpConfig", "DiscoveryConfig", "DnsConfig", "HttpConfig", "HttpsConfig", "MulticastConfig",
           "RsyncdConfig", "SatelliteLinkConfig", "SubnetConfig", "TftpConfig", "load_config", "parse_config"]

DEFAULT_CONFIG_PATH = Path("/etc/imageserver/imageserver.toml")


class Document(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The config file: one table per section, each optional."""

    appliance: ApplianceConfig = msgspec.field(default_factory=ApplianceConfig)
    dhcp: DhcpConfig = msgspec.field(default_factory=DhcpConfig)
    tftp: TftpConfig = msgspec.field(default_factory=TftpConfig)
    http: HttpConfig = msgspec.field(default_factory=HttpConfig)
    https: HttpsConfig = msgspec.field(default_factory=HttpsConfig)
    dns: DnsConfig = msgspec.field(default_factory=DnsConfig)
    boot: BootConfig = msgspec.field(default_factory=BootConfig)
    rsyncd: RsyncdConfig = msgspec.field(default_factory=RsyncdConfig)
    discovery: DiscoveryConfig = msgspec.field(default_factory=DiscoveryConfig)
    multicast: MulticastConfig = msgspec.field(default_factory=MulticastConfig)
    satellite: SatelliteLinkConfig = msgspec.field(default_factory=SatelliteLinkConfig)
    power: PowerConfig = msgspec.field(default_factory=PowerConfig)
    audit: AuditConfig = msgspec.field(default_factory=AuditConfig)


class Config(Document, frozen=True):
    """A checked config document and the file it was read from."""

    source: Path | None = None

    @property
    def state_dir(self) -> Path:
        return self.appliance.state_dir


# --- the checks between keys ---------------------------------------------------------------------

def _check_subnet(s: SubnetConfig, key: str) -> None:
    net = s.subnet
    for ip in (s.pool.first, s.pool.last):
        if ip not in net:
            raise ConfigError(f"{key}.pool", f"{ip} is outside subnet {net}")
    if {s.pool.first, s.pool.last} & {net.network_address, net.broadcast_address}:
        raise ConfigError(f"{key}.pool", "must not include the network or broadcast address")
    if s.router is not None and s.router not in net:
        raise ConfigError(f"{key}.router", f"{s.router} is outside subnet {net}")


def _dhcp(d: DhcpConfig) -> DhcpConfig:
    """[dhcp] as the services take it: the inline subnet first in `subnets`, each subnet's lease time, and
    the defaults that depend on other keys (enabled by a subnet, conflict_probe by the mode)."""
    subnets: list[tuple[str, SubnetConfig]] = []
    if d.subnet is not None or d.pool is not None or d.router is not None or d.dns or d.domain is not None:
        if d.subnet is None:
            raise ConfigError("dhcp.subnet", "is required")
        if d.pool is None:
            raise ConfigError("dhcp.pool", "is required")
        subnets.append(("dhcp", SubnetConfig(subnet=d.subnet, pool=d.pool, router=d.router, dns=d.dns,
                                             domain=d.domain)))
    subnets += [(f"dhcp.subnets[{i}]", s) for i, s in enumerate(d.subnets)]
    for key, s in subnets:
        _check_subnet(s, key)
    for i, (_, a) in enumerate(subnets):
        for _, b in subnets[i + 1:]:
            if a.subnet.overlaps(b.subnet):
                raise ConfigError("dhcp.subnets", f"subnets {a.subnet} and {b.subnet} overlap")
    return msgspec.structs.replace(
        d, subnets=tuple(s if s.lease_time is not None else msgspec.structs.replace(s, lease_time=d.lease_time)
                         for _, s in subnets),
        enabled=d.enabled if d.enabled is not None else d.subnet is not None,
        conflict_probe=d.conflict_probe if d.conflict_probe is not None else d.mode == "authoritative")


def _check_dhcp(d: DhcpConfig, appliance: ApplianceConfig) -> None:
    if not d.enabled:
        return
    own = appliance.address
    if own is None:
        raise ConfigError("appliance.address", "is required when dhcp is enabled (it is the server id)")
    if d.mode == "authoritative" and not d.subnets:
        raise ConfigError("dhcp.subnet", "authoritative DHCP needs a subnet and a pool")
    if d.subnets and not any(own in s.subnet for s in d.subnets) and d.mode != "proxy":
        raise ConfigError("appliance.address", f"{own} is in none of the DHCP subnets "
                                               f"({', '.join(str(s.subnet) for s in d.subnets)})")
    for s in d.subnets:
        if s.pool_first <= own <= s.pool_last:
            raise ConfigError("dhcp.pool", f"the pool contains the imageserver's own address {own}")


def _check_multicast(m: MulticastConfig, appliance: ApplianceConfig) -> None:
    if m.portbase % 2:
        raise ConfigError("multicast.portbase", f"{m.portbase} must be even (udpcast uses it and the next port)")
    if not m.rdv_address.is_multicast:
        raise ConfigError("multicast.rdv_address", f"{m.rdv_address} is not a multicast address")
    if m.enabled and appliance.interface is None:
        raise ConfigError("appliance.interface", "is required when multicast is enabled (udpcast sends on it)")


def _check_discovery(d: DiscoveryConfig, boot: BootConfig) -> None:
    if d.policy == "auto" and not d.rules:
        raise ConfigError("discovery.rules", 'policy "auto" needs at least one [[discovery.rules]] '
                                             '(hostname pattern and image)')
    for n, rule in enumerate(d.rules):
        _check_rule_bmc(f"discovery.rules[{n}]", rule)
    # Inspect only machines that discovery holds in their boot loop: one that boots its own disk (or gets
    # no boot) must not be powered off by an inspection it was never going to wait for.
    if d.inspect and d.policy == "ignore":
        raise ConfigError("discovery.inspect", 'policy "ignore" gives unknown machines no boot to inspect them with')
    if d.inspect and boot.unknown != "wait":
        raise ConfigError("discovery.inspect", f'needs [boot] unknown = "wait" (it is "{boot.unknown}": unknown '
                                               "machines boot their own disks, nothing holds them)")


def _check_rule_bmc(key: str, rule: DiscoveryRule) -> None:
    given = [k for k in ("bmc_scheme", "bmc_username", "bmc_password_file") if getattr(rule, k) is not None]
    if not given:
        return
    if len(given) < 3:
        raise ConfigError(f"{key}.{given[0]}", "BMC defaults need bmc_scheme, bmc_username and bmc_password_file")
    path = rule.bmc_password_file
    assert path is not None
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise ConfigError(f"{key}.bmc_password_file", f"cannot read {path}: {e.strerror}") from None
    if mode & 0o077:
        raise ConfigError(f"{key}.bmc_password_file", f"{path} is readable by others: chmod 600 {path}")


def _check_https(doc: Document) -> None:
    if doc.https.enabled and not doc.http.enabled:
        raise ConfigError("https.enabled", "needs [http] enabled: one server answers both (and PXE needs plain HTTP)")
    if doc.https.enabled and doc.https.port == doc.http.port:
        raise ConfigError("https.port", f"{doc.https.port} is [http] port too")


def _check_satellite(s: SatelliteLinkConfig) -> None:
    if s.primary_fingerprint is not None and not s.primary.startswith("https://"):
        raise ConfigError("satellite.primary_fingerprint", "pins the certificate of an https:// primary; "
                                                           f"{s.primary or 'no primary'} has none")


def parse_config(data: dict[str, Any], source: Path | None = None) -> Config:
    """Validate a parsed TOML document; raises ConfigError naming the first bad key."""
    doc = read(data, Document)
    dhcp = _dhcp(doc.dhcp)
    _check_dhcp(dhcp, doc.appliance)
    _check_multicast(doc.multicast, doc.appliance)
    _check_discovery(doc.discovery, doc.boot)
    _check_satellite(doc.satellite)
    _check_https(doc)
    fields = {f: getattr(doc, f) for f in doc.__struct_fields__}
    return Config(**{**fields, "dhcp": dhcp}, source=source)


def load_config(path: Path) -> Config:
    """Read and validate a config file; every failure is a ConfigError with a clear message."""
    try:
        raw = _read_config_file(path)
    except FileNotFoundError:
        raise ConfigError("", f"{path}: no such file (`imageserver init` writes one)") from None
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
