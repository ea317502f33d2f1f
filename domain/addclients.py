"""addclients: plan a range of hosts (www1..www300) with addresses and MACs. Pure: data in, plan out.

Names are BASE + n for n in the range, zero-padded to `pad` digits. With a first address, host i of
the range gets first + i (www1 -> first, www2 -> first + 1, ...), so the plan depends only on its
arguments and re-running it changes nothing. Every address must lie in a DHCP subnet and outside
every pool (a pool address could be leased to another machine before this one arrives), and must not
be another host's, another MAC's reservation or another MAC's active lease. MACs come from a file,
one per line: `MAC [HOSTNAME]`; a line naming a host binds to it, the other lines take the range's
names in order. All clashes are collected and reported together, each naming both sides.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from domain.errors import Conflict
from protocols.mac import normalize_mac
from protocols.names import InvalidName, host_name, image_name, is_label
from state.hosts import Host
from state.lease_pools import SubnetLike

MAX_HOSTS = 65536


class PlanError(Conflict):
    """The plan cannot be made; `problems` lists every clash, one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        shown = list(problems[:20]) + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        super().__init__("; ".join(problems) if len(problems) <= 1 else
                         f"{len(problems)} problems:\n  " + "\n  ".join(shown))
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class AddclientsRequest:
    base: str
    first: int
    last: int
    image: str | None = None
    version: int | None = None
    pad: int = 0
    first_ip: IPv4Address | None = None
    macs: tuple[tuple[str, str | None], ...] = ()  # (MAC, HOSTNAME or None), file order
    profile: str | None = None  # the profile the hosts it creates inherit from

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AddclientsRequest:
        unknown = set(d) - {"base", "range", "image", "version", "pad", "first_ip", "macs", "profile"}
        if unknown:
            raise PlanError([f"unknown field(s): {', '.join(sorted(unknown))}"])
        first, last = parse_range(str(d.get("range", "")))
        macs = d.get("macs") or []
        if not isinstance(macs, list) or not all(isinstance(x, list | tuple) and 1 <= len(x) <= 2 for x in macs):
            raise PlanError(['"macs" must be a list of [MAC, HOSTNAME or null]'])
        version = d.get("version")
        pad = d.get("pad") or 0
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise PlanError(['"version" must be an integer'])
        if isinstance(pad, bool) or not isinstance(pad, int):
            raise PlanError(['"pad" must be an integer'])
        try:
            first_ip = IPv4Address(d["first_ip"]) if d.get("first_ip") else None
        except ValueError:
            raise PlanError([f"{d['first_ip']!r} is not an IPv4 address"]) from None
        if d.get("image"):
            image_name(d["image"])  # an InvalidName, not a plan clash: the request is malformed
        profile = host_name(str(d["profile"])) if d.get("profile") else None  # named like a host
        return cls(base=str(d.get("base", "")), first=first, last=last, image=d.get("image") or None,
                   version=version, pad=pad, first_ip=first_ip,
                   macs=tuple((str(x[0]), (str(x[1]) if len(x) > 1 and x[1] else None)) for x in macs),
                   profile=profile)


@dataclass(frozen=True, slots=True)
class PlannedHost:
    name: str
    mac: str | None
    ip: IPv4Address | None
    image: str | None
    version: int | None
    action: str  # "create" | "update" | "keep"
    changes: tuple[str, ...] = ()  # for "update": the fields that change


@dataclass(frozen=True, slots=True)
class Plan:
    """Its JSON is domain.hostadmin.AddclientsPlan's (the API answer and the offline CLI print the same)."""

    hosts: tuple[PlannedHost, ...]

    def counts(self) -> dict[str, int]:
        out = {"create": 0, "update": 0, "keep": 0}
        for h in self.hosts:
            out[h.action] += 1
        return out


@dataclass(frozen=True, slots=True)
class Existing:
    """What the plan must not clash with (read from the store and the lease book)."""

    hosts: tuple[Host, ...] = ()
    reservations: tuple[tuple[str, IPv4Address, str | None], ...] = ()  # (mac, ip, hostname)
    active_leases: tuple[tuple[str, IPv4Address], ...] = ()  # (mac, ip)
    subnets: tuple[SubnetLike, ...] = ()
    own_addresses: tuple[IPv4Address, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


def parse_range(text: str) -> tuple[int, int]:
    first, sep, last = text.strip().partition("-")
    try:
        a, b = int(first), int(last if sep else first)
    except ValueError:
        raise PlanError([f"range {text!r}: expected FIRST-LAST, e.g. 1-300"]) from None
    if a < 0 or b < a:
        raise PlanError([f"range {text!r}: FIRST must be 0 or more and not after LAST"])
    if b - a + 1 > MAX_HOSTS:
        raise PlanError([f"range {text!r}: more than {MAX_HOSTS} hosts"])
    return a, b


def parse_macs(text: str, source: str = "MAC file") -> tuple[tuple[str, str | None], ...]:
    """`MAC [HOSTNAME]` per line; blank lines and # comments are skipped. Errors name the line."""
    out: list[tuple[str, str | None]] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) > 2:
            problems.append(f"{source} line {number}: expected 'MAC [HOSTNAME]', got {line.strip()!r}")
            continue
        try:
            mac = normalize_mac(words[0])
        except InvalidName as e:
            problems.append(f"{source} line {number}: {e}")
            continue
        out.append((mac, words[1].lower() if len(words) > 1 else None))
    if problems:
        raise PlanError(problems)
    return tuple(out)


def host_names(base: str, first: int, last: int, pad: int) -> list[str]:
    return [f"{base}{n:0{pad}d}" for n in range(first, last + 1)]


def plan_addclients(req: AddclientsRequest, existing: Existing) -> Plan:
    """The hosts `req` asks for, each marked create/update/keep; PlanError lists every clash."""
    base = req.base.strip().lower()
    if not base or not re.fullmatch(r"[a-z0-9-]+", base) or base.startswith("-"):
        raise PlanError([f"base {req.base!r} must be letters, digits and '-' (e.g. www)"])
    if not 0 <= req.pad <= 10:
        raise PlanError([f"pad {req.pad} must be 0..10 digits"])
    names = host_names(base, req.first, req.last, req.pad)
    problems = [f"{n}: not a host name (one DNS label of at most 63 characters)" for n in names
                if not is_label(n)]
    if req.version is not None and req.version < 1:
        problems.append(f"version {req.version} must be 1 or more")
    if problems:
        raise PlanError(problems)

    by_name = {h.name: h for h in existing.hosts}
    host_of_mac = {h.mac: h.name for h in existing.hosts if h.mac}
    host_of_ip = {h.ip: h.name for h in existing.hosts if h.ip is not None}
    reserved = {ip: (mac, hostname) for mac, ip, hostname in existing.reservations}
    leased = {ip: mac for mac, ip in existing.active_leases}

    # MACs: named lines first, then the rest in order onto the names still without one.
    macs: dict[str, str] = {}
    wanted = set(names)
    seen_macs: dict[str, str] = {}
    for mac, hostname in req.macs:
        if mac in seen_macs:
            problems.append(f"MAC {mac} is listed twice (for {seen_macs[mac]} and again)")
            continue
        if hostname is not None:
            if hostname not in wanted:
                problems.append(f"MAC {mac} names {hostname}, which is not in {names[0]}..{names[-1]}")
            elif hostname in macs:
                problems.append(f"{hostname} is given two MACs ({macs[hostname]} and {mac})")
            else:
                macs[hostname] = mac
            seen_macs[mac] = hostname
    free = iter(n for n in names if n not in macs)
    for mac, hostname in req.macs:
        if hostname is None and mac not in seen_macs:
            name = next(free, None)
            if name is None:
                problems.append(f"more MACs than names in {names[0]}..{names[-1]}: {mac} has no host")
                continue
            macs[name] = mac
            seen_macs[mac] = name

    planned: list[PlannedHost] = []
    for i, name in enumerate(names):
        old = by_name.get(name)
        host_mac = macs.get(name) or (old.mac if old else None)
        ip = (req.first_ip + i) if req.first_ip is not None else (old.ip if old else None)
        image = req.image or (old.image if old else None)
        version = req.version if req.version is not None else (old.version if old else None)
        if req.first_ip is not None and int(req.first_ip) + i > 0xFFFFFFFF:
            problems.append(f"{name}: the range runs past 255.255.255.255")
            continue
        if host_mac is not None:
            owner = host_of_mac.get(host_mac)
            if owner is not None and owner != name:
                problems.append(f"{name}: MAC {host_mac} is host {owner}'s")
            if old is not None and old.mac is not None and old.mac != host_mac:
                problems.append(f"{name}: has MAC {old.mac} already, the file gives {host_mac} "
                                f"(change it with: imageserver hosts set {name} --mac {host_mac})")
        if ip is not None:
            problems.extend(f"{name}: {p}" for p in _address_problems(ip, host_mac, name, existing, host_of_ip,
                                                                      reserved, leased))
        planned.append(_planned(name, host_mac, ip, image, version, old))
    if problems:
        raise PlanError(problems)
    return Plan(tuple(planned))


def _address_problems(ip: IPv4Address, mac: str | None, name: str, existing: Existing,
                      host_of_ip: dict[IPv4Address, str], reserved: dict[IPv4Address, tuple[str, str | None]],
                      leased: dict[IPv4Address, str]) -> list[str]:
    out: list[str] = []
    subnet = next((s for s in existing.subnets if ip in s.network), None)
    if existing.subnets and subnet is None:
        out.append(f"{ip} is outside every DHCP subnet ({', '.join(str(s.network) for s in existing.subnets)})")
    if subnet is not None:
        net: IPv4Network = subnet.network
        if ip in (net.network_address, net.broadcast_address):
            out.append(f"{ip} is the network or broadcast address of {net}")
    for s in existing.subnets:
        if s.pool_first <= ip <= s.pool_last:
            out.append(f"{ip} is inside the DHCP pool {s.pool_first}-{s.pool_last} (choose --first-ip outside it)")
    if ip in existing.own_addresses:
        out.append(f"{ip} is the imageserver's own address")
    owner = host_of_ip.get(ip)
    if owner is not None and owner != name:
        out.append(f"{ip} is host {owner}'s address")
    res = reserved.get(ip)
    if res is not None and res[0] != mac and res[1] != name:
        out.append(f"{ip} is reserved for {res[0]}" + (f" ({res[1]})" if res[1] else ""))
    lessee = leased.get(ip)
    if lessee is not None and lessee != mac:
        out.append(f"{ip} is leased to {lessee}")
    return out


def _planned(name: str, mac: str | None, ip: IPv4Address | None, image: str | None, version: int | None,
             old: Host | None) -> PlannedHost:
    if old is None:
        return PlannedHost(name, mac, ip, image, version, "create")
    changes = tuple(k for k, v in (("mac", mac), ("ip", ip), ("image", image), ("version", version))
                    if getattr(old, k) != v)
    return PlannedHost(name, mac, ip, image, version, "update" if changes else "keep", changes)
