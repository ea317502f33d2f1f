"""The reservation table in the formats of other DHCP servers, for sites that keep theirs
(`imageserver reservations export --format isc|dnsmasq|kea`). Pure: rows in, text out."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

FORMATS = ("isc", "dnsmasq", "kea")


@dataclass(frozen=True, slots=True)
class ExportRow:
    mac: str
    ip: IPv4Address
    hostname: str | None


def _isc_name(row: ExportRow, used: set[str]) -> str:
    # host declarations need unique names; a host name is one, else the MAC spelled without colons.
    base = row.hostname or "mac-" + row.mac.replace(":", "")
    name, n = base, 2
    while name in used:
        name, n = f"{base}-{n}", n + 1
    used.add(name)
    return name


def isc(rows: Sequence[ExportRow]) -> str:
    """ISC dhcpd host declarations (include them from dhcpd.conf)."""
    used: set[str] = set()
    out = ["# DHCP reservations exported by imageserver (ISC dhcpd host declarations)"]
    for row in rows:
        out.append(f"host {_isc_name(row, used)} {{")
        out.append(f"  hardware ethernet {row.mac};")
        out.append(f"  fixed-address {row.ip};")
        if row.hostname:
            out.append(f'  option host-name "{row.hostname}";')
        out.append("}")
    return "\n".join(out) + "\n"


def dnsmasq(rows: Sequence[ExportRow]) -> str:
    """dnsmasq dhcp-host lines (a conf-file / conf-dir snippet)."""
    out = ["# DHCP reservations exported by imageserver (dnsmasq dhcp-host lines)"]
    out.extend(f"dhcp-host={row.mac},{row.ip}" + (f",{row.hostname}" if row.hostname else "") for row in rows)
    return "\n".join(out) + "\n"


def kea(rows: Sequence[ExportRow], subnets: Sequence[IPv4Network]) -> str:
    """Kea DHCPv4 `subnet4` entries with their `reservations` (merge into the Dhcp4 section).

    Kea keeps reservations per subnet, so each row goes under the subnet that contains its address;
    subnet ids are 1, 2, ... in the imageserver's subnet order."""
    entries = []
    for i, net in enumerate(subnets, 1):
        mine = [r for r in rows if r.ip in net]
        reservations = [{"hw-address": r.mac, "ip-address": str(r.ip), **({"hostname": r.hostname} if r.hostname
                                                                          else {})} for r in mine]
        entries.append({"id": i, "subnet": str(net), "reservations": reservations})
    stray = [r for r in rows if not any(r.ip in n for n in subnets)]
    doc: dict[str, object] = {"subnet4": entries}
    if stray:
        doc["comment"] = "outside every subnet, left out: " + ", ".join(f"{r.mac} {r.ip}" for r in stray)
    return json.dumps(doc, indent=2) + "\n"


def export(fmt: str, rows: Sequence[ExportRow], subnets: Sequence[IPv4Network] = ()) -> str:
    rows = sorted(rows, key=lambda r: int(r.ip))
    if fmt == "isc":
        return isc(rows)
    if fmt == "dnsmasq":
        return dnsmasq(rows)
    if fmt == "kea":
        return kea(rows, subnets)
    raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")


def rows_from_dicts(items: Sequence[dict[str, object]]) -> list[ExportRow]:
    """Reservation rows as the API and the offline model list them ({"mac", "ip", "hostname", ...})."""
    out = []
    for d in items:
        hostname = d.get("hostname")
        clean = hostname if isinstance(hostname, str) and re.fullmatch(r"[A-Za-z0-9.-]+", hostname) else None
        out.append(ExportRow(str(d["mac"]), IPv4Address(str(d["ip"])), clean))
    return out
