"""`imageserver init`'s pieces: the box's interfaces, a pool proposal, the config text.

The seed's makedhcpserver asked an admin who need not know DHCP a few questions and wrote dhcpd.conf;
here the answers become an annotated imageserver.toml. Everything but the probe and `ip -j addr` is a
pure function, so the proposals are tested without a network.

The probe (services/dhcp_server_probe.py) sends one DHCPDISCOVER out of the chosen interface and
collects OFFERs for a couple of seconds. An offer with an address (yiaddr) means another DHCP server
already hands out addresses on that segment, so the imageserver should only add PXE boot answers
(proxy mode) instead of fighting it.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

SMALLEST_PREFIX = 29  # a /30 has two usable addresses: no room for the box, a router and a pool


class WizardError(RuntimeError):
    """Something init cannot propose or do; the message tells the admin what to pass instead."""


@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    mac: str | None
    up: bool
    addresses: tuple[IPv4Interface, ...]
    loopback: bool = False

    def describe(self) -> str:
        addrs = ", ".join(str(a) for a in self.addresses) or "no IPv4 address"
        return f"{self.name:<15} {'up' if self.up else 'down':<4} {self.mac or '-':<17}  {addrs}"


def parse_ip_addr(text: str) -> list[Interface]:
    """`ip -j addr` output -> interfaces with their IPv4 addresses (IPv6 is not served by the imageserver)."""
    out: list[Interface] = []
    for entry in json.loads(text or "[]"):
        flags = entry.get("flags") or []
        addrs = tuple(IPv4Interface(f"{a['local']}/{a['prefixlen']}") for a in entry.get("addr_info") or []
                      if a.get("family") == "inet" and "local" in a and "prefixlen" in a)
        mac = entry.get("address") if entry.get("link_type") == "ether" else None
        out.append(Interface(name=str(entry.get("ifname", "?")).split("@")[0], mac=mac, up="UP" in flags,
                             addresses=addrs, loopback="LOOPBACK" in flags))
    return out


def parse_default_routes(text: str) -> dict[str, IPv4Address]:
    """`ip -j -4 route show default` -> {interface: gateway}."""
    routes: dict[str, IPv4Address] = {}
    for entry in json.loads(text or "[]"):
        if entry.get("gateway") and entry.get("dev"):
            routes.setdefault(entry["dev"], IPv4Address(entry["gateway"]))
    return routes


def read_interfaces() -> tuple[list[Interface], dict[str, IPv4Address]]:
    """This box's interfaces and default gateways, read with iproute2 (nothing is changed)."""
    try:
        addr = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True, timeout=10)
        route = subprocess.run(["ip", "-j", "-4", "route", "show", "default"], capture_output=True, text=True,
                               timeout=10)
    except (OSError, subprocess.SubprocessError) as e:
        raise WizardError(f"cannot list interfaces with `ip -j addr` ({e}); pass --interface and --address") from None
    return parse_ip_addr(addr.stdout), parse_default_routes(route.stdout if route.returncode == 0 else "")


def default_interface(interfaces: Sequence[Interface], gateways: dict[str, IPv4Address]) -> Interface | None:
    """The likeliest provisioning interface: up, with IPv4, preferably not the one the default route uses
    (a provisioning segment is usually a second NIC; the first one reaches the office LAN)."""
    usable = [i for i in interfaces if not i.loopback and i.addresses and i.up]
    if not usable:
        return None
    return next((i for i in usable if i.name not in gateways), usable[0])


def propose_pool(address: IPv4Interface, avoid: Iterable[IPv4Address] = ()) -> tuple[IPv4Address, IPv4Address]:
    """The upper half of the subnet, minus the box's own address and anything in `avoid` (the router, other
    addresses of this box): the longest run of free addresses there. The lower half stays for reservations
    and for whatever the segment already uses by hand (routers are usually .1 or .254)."""
    net = address.network
    if net.prefixlen > SMALLEST_PREFIX:
        raise WizardError(f"subnet {net} is too small for a pool; use at least a /{SMALLEST_PREFIX} or pass --pool")
    base = int(net.network_address)
    start, end = base + net.num_addresses // 2, int(net.broadcast_address) - 1
    blocked = sorted(n for n in {int(address.ip), *(int(a) for a in avoid)} if start <= n <= end)
    best = (0, 0, -1)  # (length, first, last)
    cursor = start
    for n in [*blocked, end + 1]:
        if n - cursor > best[0]:
            best = (n - cursor, cursor, n - 1)
        cursor = n + 1
    if best[0] < 1:
        raise WizardError(f"no free addresses in the upper half of {net}; pass --pool first-last")
    return IPv4Address(best[1]), IPv4Address(best[2])


def parse_pool(text: str, address: IPv4Interface) -> tuple[IPv4Address, IPv4Address]:
    """An admin's 'first-last' checked against the subnet and the box's own address."""
    first_s, sep, last_s = text.partition("-")
    try:
        first, last = IPv4Address(first_s.strip()), IPv4Address(last_s.strip())
    except ValueError:
        raise WizardError(f"pool {text!r}: expected 'first-last', e.g. '10.0.0.100-10.0.0.199'") from None
    net = address.network
    if not sep or first > last:
        raise WizardError(f"pool {text!r}: expected 'first-last' with first <= last")
    for ip in (first, last):
        if ip not in net or ip in (net.network_address, net.broadcast_address):
            raise WizardError(f"pool {text!r}: {ip} is not a host address of {net}")
    if first <= address.ip <= last:
        raise WizardError(f"pool {text!r} contains this box's own address {address.ip}")
    return first, last


# ------------------------------------------------------------------------------------ the config


@dataclass(frozen=True, slots=True)
class Answers:
    interface: str
    address: IPv4Interface
    mode: str  # "authoritative" | "proxy"
    pool: tuple[IPv4Address, IPv4Address] | None
    router: IPv4Address | None
    state_dir: Path
    note: str = ""  # what the probe found, for the file's header
    tls_dir: Path | None = None  # where init makes the HTTPS certificate and key ([https] cert, key)


_ASSIGNMENT = re.compile(r"^(?P<key>[a-z_]+)(?P<eq>\s*=\s*)(?P<value>.*?)(?P<comment>\s+#.*)?$")


def _toml_str(value: object) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


_SECTION = re.compile(r"^\[([a-z]+)\]")
# Keys the example shows commented out (unset) that init sets. Only these: other commented lines are examples
# of tables such as [[dhcp.subnets]], whose keys share names with the section's own.
_SET_WHEN_COMMENTED = frozenset({("https", "cert"), ("https", "key")})


def _section_values(a: Answers) -> dict[tuple[str, str], tuple[str | None, bool]]:
    """(section, key) -> (new TOML value or None to keep the example's, commented out?)."""
    ip = a.address.ip
    values: dict[tuple[str, str], tuple[str | None, bool]] = {
        ("appliance", "state_dir"): (_toml_str(a.state_dir), False),
        ("appliance", "interface"): (_toml_str(a.interface), False),
        ("appliance", "address"): (_toml_str(ip), False),
        ("dhcp", "enabled"): ("true", False),
        ("dhcp", "mode"): (_toml_str(a.mode), False),
        # The imageserver's own DNS is off by default: clients are not pointed at it unless [dns] is enabled.
        ("dhcp", "dns"): (f"[{_toml_str(ip)}]", True),
        # The admin API and the dashboard over TLS: init makes the self-signed certificate (appliance/tls.py).
        ("https", "enabled"): ("true", False),
    }
    if a.tls_dir is not None:
        values[("https", "cert")] = (_toml_str(a.tls_dir / "cert.pem"), False)
        values[("https", "key")] = (_toml_str(a.tls_dir / "key.pem"), False)
    if a.mode == "proxy" or a.pool is None:
        # Another server owns the addresses on this segment; we only answer PXE clients.
        values[("dhcp", "subnet")] = (_toml_str(a.address.network), True)
        for key in ("pool", "router", "conflict_probe"):
            values[("dhcp", key)] = (None, True)
    else:
        values[("dhcp", "subnet")] = (_toml_str(a.address.network), False)
        values[("dhcp", "pool")] = (_toml_str(f"{a.pool[0]}-{a.pool[1]}"), False)
        values[("dhcp", "router")] = (_toml_str(a.router), False) if a.router is not None else (None, True)
    return values


def render_config(example: str, a: Answers, *, written_at: str) -> str:
    """The annotated example with this box's answers filled in, comments kept in their column (the
    "example:" marks dropped on the lines init decided). Keys init leaves unset are commented out."""
    values = _section_values(a)
    section = ""
    lines: list[str] = []
    for line in example.splitlines():
        stripped = line.strip()
        header = _SECTION.match(stripped)
        if header:  # "[name]", perhaps followed by a comment
            section = header[1]
        m = _ASSIGNMENT.match(line)
        if m is None and line.startswith("# "):  # a key the example leaves unset, which init may set
            m = _ASSIGNMENT.match(line[2:])
            if m is not None and (section, m["key"]) not in _SET_WHEN_COMMENTED:
                m = None
        if m and (section, m["key"]) in values:
            new, commented = values[(section, m["key"])]
            head = f"{m['key']}{m['eq']}{new if new is not None else m['value']}"
            if commented:
                head = "# " + head
            if m["comment"]:
                comment = m["comment"].lstrip().replace("# example: ", "# ")
                column = m.start("comment") + len(m["comment"]) - len(m["comment"].lstrip())
                line = head.ljust(column - 1) + " " + comment
            else:
                line = head
        lines.append(line)
    header = [
        f"# Written by `imageserver init` on {written_at} for {a.interface} ({a.address}).",
        *(f"# {part}" for part in a.note.splitlines() if part),
        "# Edit freely; check with `imageserver check-config --config <this file>`, then start the service.",
        "",
    ]
    body = "\n".join(lines)
    # The example's own first lines introduce it as an example: this file is not one any more.
    body = re.sub(r"\A# imageserver configuration — an annotated example\.[^\n]*\n", "", body)
    return "\n".join(header) + body + "\n"
