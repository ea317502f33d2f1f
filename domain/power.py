"""Power control through each host's BMC: the use cases the API and the CLI share (set, show and remove a
host's BMC; which BMCs a power request reaches), their request and answer types, and the rule for a BMC
address. The drivers that talk to BMCs are services/power/.

A BMC address is `ipmi://HOST[:PORT]` (IPMI over LAN, lanplus, port 623), `redfish://HOST[:PORT]` or
`https://HOST[:PORT]` (Redfish over TLS, port 443), or `http://HOST:PORT` (Redfish without TLS: labs and
emulators); a Redfish address may end in a system's path, `/redfish/v1/Systems/ID`, where one service manages
several machines (else its first system is the host's). The password is never part of an answer: BmcView
has no field for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Literal
from urllib.parse import urlsplit

from domain.errors import Invalid, NotFound
from domain.nodesets import MAX_HOSTS, BadRange, expand
from domain.sources import Sources
from domain.views import doc
from state.bmcs import (
    Bmc,
    BmcSecret,
    Op,
    PowerState,
    bmc_of,
    bmc_secrets,
    bmcs_of,
    delete_bmc_op,
    power_states_of,
)
from state.bmcs import set_bmc_op as store_bmc_op
from state.db import Connection
from state.hosts import bmc_sources, host_by_name, names_among
from state.profiles import profile_bmc_secrets

BmcKind = Literal["ipmi", "redfish"]
# status: ask; on/off/cycle: the power (cycle on a machine that is off powers it on); pxe: boot from the
# network once at the next boot; pxe-cycle: both, the reinstall's (`hosts reinstall --power-cycle`).
PowerAction = Literal["status", "on", "off", "cycle", "pxe", "pxe-cycle"]
ACTIONS: tuple[str, ...] = ("status", "on", "off", "cycle", "pxe", "pxe-cycle")
_PORTS = {"ipmi": 623, "redfish": 443, "https": 443}
_HEX = re.compile(r"^[0-9a-f]{64}$")
_SYSTEM = re.compile(r"^/redfish/v1/Systems/[A-Za-z0-9._~-]+/?$")


@dataclass(frozen=True, slots=True)
class BmcAddress:
    kind: BmcKind
    host: str
    port: int
    tls: bool  # Redfish over https
    system: str | None = None  # Redfish: the ComputerSystem's path when the service has several (Metal3's form)

    @property
    def base_url(self) -> str:
        """Redfish's service root's origin."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"


def parse_bmc_address(text: str) -> BmcAddress:
    """The address's parts, or Invalid saying what is wrong (credentials never go in the address)."""
    try:
        url = urlsplit(text.strip())
        port = url.port
    except ValueError as e:
        raise Invalid(f"BMC address {text!r}: {e}") from None
    scheme = url.scheme.lower()
    if scheme not in ("ipmi", "redfish", "https", "http"):
        raise Invalid(f"BMC address {text!r}: give ipmi://HOST[:PORT], redfish://HOST[:PORT] or https://HOST[:PORT]")
    if url.username is not None or url.password is not None:
        raise Invalid(f"BMC address of {url.hostname!r}: no user or password in the address (--bmc-user, "
                      "--bmc-password-file)")
    system = url.path.rstrip("/") if _SYSTEM.match(url.path) and scheme != "ipmi" else None
    if not url.hostname or (url.path not in ("", "/") and system is None) or url.query or url.fragment:
        raise Invalid(f"BMC address {text!r}: only a host and a port, e.g. {scheme}://10.1.0.7 (Redfish: and a "
                      "system's path, /redfish/v1/Systems/ID, where the service has several)")
    if scheme == "http" and port is None:
        raise Invalid(f"BMC address {text!r}: plain-HTTP Redfish needs its port")
    kind: BmcKind = "ipmi" if scheme == "ipmi" else "redfish"
    return BmcAddress(kind, url.hostname, port or _PORTS.get(scheme, 80), tls=scheme in ("redfish", "https"),
                      system=system)


def canonical_fingerprint(text: str) -> str:
    """A SHA-256 certificate fingerprint as 64 lower-case hex digits (colons and `sha256:` accepted)."""
    value = text.strip().lower().removeprefix("sha256:").replace(":", "")
    if not _HEX.match(value):
        raise Invalid("BMC certificate fingerprint: give the SHA-256 of its certificate in hex "
                      "(openssl x509 -noout -fingerprint -sha256)")
    return value


@dataclass(frozen=True, slots=True)
class SetBmc:
    """PUT /api/v1/hosts/{name}/bmc: the host's BMC. Without a password the stored one is kept."""

    address: str = field(metadata=doc("ipmi://HOST[:PORT], redfish://HOST[:PORT], https://HOST[:PORT] or "
                                      "http://HOST:PORT"))
    username: str
    password: str | None = field(default=None, metadata=doc("stored 0600, never shown again", omit_none=True))
    fingerprint: str | None = field(default=None, metadata=doc(
        "SHA-256 of the BMC's TLS certificate (Redfish over https): the only certificate accepted",
        omit_none=True))


@dataclass(frozen=True, slots=True)
class BmcView:
    """A host's BMC as shown: no password, ever."""

    host: str
    address: str
    kind: str = field(metadata=doc("ipmi or redfish"))
    username: str
    fingerprint: str | None = field(metadata=doc("the pinned certificate's SHA-256, null: not pinned"))
    power: str | None = field(metadata=doc("on or off: the BMC's last answer, null before the first"))
    error: str | None = field(metadata=doc("why the last call to the BMC failed, null: it did not"))
    checked: float | None = field(metadata=doc("when the BMC last answered (or failed)"))

    @classmethod
    def of(cls, b: Bmc) -> BmcView:
        return cls(b.host, b.address, parse_bmc_address(b.address).kind, b.username, b.fingerprint, b.power,
                   b.error, b.checked)


@dataclass(frozen=True, slots=True)
class PowerView:
    """A host's last known power state: from its power operations and the periodic poll ([power] poll)."""

    state: str | None = field(metadata=doc("on or off: the BMC's last answer, null: not known"))
    error: str | None = field(metadata=doc("why the BMC's last call failed: the host's error, null: it did not"))
    checked: float = field(metadata=doc("when the BMC last answered (or failed)"))

    @classmethod
    def of(cls, s: PowerState) -> PowerView:
        return cls(s.power, s.error, s.checked)


def power_views(reader: Connection, names: list[str]) -> dict[str, PowerView]:
    return {n: PowerView.of(s) for n, s in power_states_of(reader, names).items()}


@dataclass(frozen=True, slots=True)
class PowerRequest:
    """POST /api/v1/power: one action on many hosts; each answers for itself."""

    action: str = field(metadata=doc("status, on, off, cycle (on if off), pxe (network boot once), pxe-cycle",
                                     enum=list(ACTIONS)))
    hosts: list[str] = field(default_factory=list, metadata=doc("host names"))
    range: str | None = field(default=None, metadata=doc("and/or a host range: node[001-300], rack[1-2]-n[01-40]",
                                                         omit_none=True))


@dataclass(frozen=True, slots=True)
class PowerResult:
    host: str
    ok: bool
    power: str | None = field(default=None, metadata=doc("on or off after the action, where known"))
    error: str | None = field(default=None, metadata=doc("why it failed: the BMC's reason"))
    seconds: float = field(default=0.0, metadata=doc("how long its BMC took"))
    started: float | None = field(default=None, metadata=doc(
        "when its BMC was called, in seconds from the start of the whole call (a host waiting for a free slot "
        "of [power] concurrency starts later)", omit_none=True))


@dataclass(frozen=True, slots=True)
class PowerAnswer:
    action: str
    results: list[PowerResult]
    seconds: float = field(metadata=doc("the whole call"))


def checked_request(req: PowerRequest) -> PowerRequest:
    """The action checked and the hosts named (the list's, then the range's, each once)."""
    if req.action not in ACTIONS:
        raise Invalid(f"action {req.action!r} is not one of {', '.join(ACTIONS)}")
    names = list(req.hosts)
    if req.range:
        try:
            names += expand(req.range)
        except BadRange as e:
            raise Invalid(str(e)) from None
    if not names:
        raise Invalid("no hosts given")
    names = list(dict.fromkeys(names))
    if len(names) > MAX_HOSTS:
        raise Invalid(f"at most {MAX_HOSTS} hosts per call")
    return PowerRequest(req.action, names)


def set_bmc_op(src: Sources, name: str, req: SetBmc) -> Op:
    """The op that gives host `name` its BMC (checked first: the host, the address, a password)."""
    address = parse_bmc_address(req.address)
    if not req.username:
        raise Invalid("the BMC needs a user name")
    if host_by_name(src.reader, name) is None:
        raise NotFound(f"no host named {name!r}")
    if req.password is None and bmc_of(src.reader, name) is None:
        raise Invalid(f"host {name} has no BMC yet: give its password too")
    if req.password is not None and (not req.password or "\n" in req.password):
        raise Invalid("the BMC password is empty or spans lines")
    pin = canonical_fingerprint(req.fingerprint) if req.fingerprint else None
    if pin and not address.tls:
        raise Invalid("a certificate fingerprint pins a Redfish BMC over https only")
    return store_bmc_op(name, req.address.strip(), req.username, req.password, pin)


def discovered_bmc_op(name: str, scheme: str, reported: str, username: str, password: str) -> tuple[str, Op]:
    """The BMC a host made by discovery gets: the address its machine's inventory reports, under its rule's
    scheme, user and password (domain.discovery.DiscoveryRule's BMC defaults). Its address, and the op (the
    host's row must be written first); Invalid says what does not fit, never the password."""
    try:
        host = str(ip_address(reported.strip()))
    except ValueError:
        raise Invalid(f"the inventory's BMC address {reported!r} is not an IP address") from None
    address = f"{scheme}://[{host}]" if ":" in host else f"{scheme}://{host}"
    parse_bmc_address(address)
    if not username:
        raise Invalid("the BMC needs a user name")
    if not password or "\n" in password:
        raise Invalid("the BMC password file is empty or holds more than one line")
    return address, store_bmc_op(name, address, username, password, None)


def show_bmc(src: Sources, name: str) -> BmcView:
    bmc = bmc_of(src.reader, name)
    if bmc is None:
        if host_by_name(src.reader, name) is None:
            raise NotFound(f"no host named {name!r}")
        raise NotFound(f"host {name} has no BMC (imageserver hosts set {name} --bmc ADDRESS --bmc-user USER "
                       "--bmc-password-file FILE)")
    return BmcView.of(bmc)


def remove_bmc_op(src: Sources, name: str) -> tuple[BmcView, Op]:
    view = show_bmc(src, name)
    return view, delete_bmc_op(name)


def power_targets(reader: Connection, names: list[str]) -> tuple[dict[str, BmcSecret], dict[str, str]]:
    """The BMCs of `names` (for the drivers), and why each other host cannot be reached."""
    known = names_among(reader, names)
    whose = bmc_sources(reader, [n for n in names if n in known])  # its own, else its profile's (the view)
    secrets = bmc_secrets(reader, [n for n in names if whose.get(n) == "host"])
    secrets.update(profile_bmc_secrets(reader, [n for n in names if whose.get(n) == "profile"]))
    errors: dict[str, str] = {}
    for n in names:
        if n not in known:
            errors[n] = f"no host named {n!r}"
        elif n not in secrets:
            errors[n] = f"host {n} has no BMC (imageserver hosts set {n} --bmc ADDRESS ..., or a profile's)"
        else:
            try:
                parse_bmc_address(secrets[n].address)
            except Invalid as e:
                secrets.pop(n)
                errors[n] = str(e)
    return secrets, errors


def pollable_hosts(reader: Connection) -> list[str]:
    """Every host with a BMC, its own or its profile's: what the periodic power poll asks."""
    return list(bmc_sources(reader))


def bmc_views(reader: Connection, names: list[str]) -> dict[str, BmcView]:
    return {n: BmcView.of(b) for n, b in bmcs_of(reader, names).items()}
