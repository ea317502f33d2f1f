"""Which names the imageserver's DNS serves, read from the store, and rebuilt the moment a table changes.

Sources, in priority order (the first to claim a name keeps it; the first to claim an address owns its PTR):
1. hosts with an address: the names an operator (or `addclients`) gave; the source of truth;
   A host without an address answers with the active lease of its own MAC (and only that MAC's).
2. reservations with a hostname: static addresses, usually a host's converted lease;
3. active leases whose client sent a hostname (DHCP option 12): machines not yet made hosts, so an
   installer or a discovered machine is reachable by name. These names come from the wire, so they are
   owned: only a valid single DNS label is taken (a client must not plant 'www.other.zone' or shadow a
   subdomain); never a host's name (a second MAC saying "node1" does not take node1 over), never a
   reserved name (localhost, wpad, isatap, the imageserver's own); and among clashing clients the first
   lease keeps the name until it ends (first come; a renewal keeps its start). What is refused is in
   `NameSnapshot.refused`, for the DNS service to log.

Change detection is `PRAGMA data_version` on the reader connection: it changes when any *other*
connection commits (the journal's writer thread, an offline CLI), so a check costs one pragma and a
rebuild happens only after a write. Leases also stop counting with time alone, so a snapshot is also
rebuilt once the earliest lease in it has expired.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address

from protocols.names import is_label
from state.hosts import name_mac_ip_rows
from state.lease_rows import active_lease_rows, reservation_rows

# Names no client may claim from the wire: resolver magic (WPAD/ISATAP proxy and tunnel discovery) and loopback.
RESERVED_NAMES = frozenset({"localhost", "wpad", "isatap"})


@dataclass(frozen=True, slots=True)
class NameEntry:
    name: str
    address: IPv4Address
    source: str  # "host" | "reservation" | "lease"


@dataclass(frozen=True, slots=True)
class RefusedName:
    name: str
    mac: str
    source: str  # "reservation" | "lease"
    reason: str  # "reserved" | "host-name" | "taken" | "invalid"


@dataclass(frozen=True, slots=True)
class NameSnapshot:
    entries: tuple[NameEntry, ...]  # in priority order
    serial: int  # grows whenever the entries change (SOA serial)
    built_at: float
    valid_until: float | None  # the earliest end of a lease in it; None: only time-independent rows
    refused: tuple[RefusedName, ...] = ()


class NameIndex:
    """The current names, rebuilt lazily: call `snapshot(now)` per query, it is one PRAGMA when nothing changed."""

    def __init__(self, conn: sqlite3.Connection, reserved: Iterable[str] = ()) -> None:
        self._conn = conn
        # RESERVED_NAMES and the caller's (the imageserver's own name), refused to reservations and leases.
        self.reserved = RESERVED_NAMES | {n.strip().lower().rstrip(".") for n in reserved}
        self._version: int | None = None
        self._snapshot: NameSnapshot | None = None
        self.rebuilds = 0

    def snapshot(self, now: float) -> NameSnapshot:
        version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
        snap = self._snapshot
        if (snap is not None and version == self._version
                and (snap.valid_until is None or now < snap.valid_until)):
            return snap
        self._snapshot = self._build(now, snap)
        self._version = version
        self.rebuilds += 1
        return self._snapshot

    def _build(self, now: float, previous: NameSnapshot | None) -> NameSnapshot:
        entries: list[NameEntry] = []
        refused: list[RefusedName] = []
        hosts = name_mac_ip_rows(self._conn)
        host_names = {str(r[0]).lower(): r[1] for r in hosts}
        host_macs = {str(r[1]): str(r[0]) for r in hosts if r[1] is not None}
        entries.extend(NameEntry(str(r[0]), a, "host") for r in hosts
                       if r[2] is not None and (a := _address(r[2])) is not None)
        leases = active_lease_rows(self._conn, now)
        reservations = reservation_rows(self._conn)
        valid_until: float | None = None
        # A host without an address of its own is found at its own MAC's reservation, else its active lease.
        addressless = {str(r[1]): str(r[0]) for r in hosts if r[1] is not None and r[2] is None}
        for _raw, addr, mac in reservations:
            if (name := addressless.pop(str(mac), None)) is not None and (a := _address(addr)) is not None:
                entries.append(NameEntry(name, a, "host"))
        for mac, _raw, addr, expires in leases:
            if (name := addressless.pop(str(mac), None)) is not None and (a := _address(addr)) is not None:
                entries.append(NameEntry(name, a, "host"))
                valid_until = float(expires) if valid_until is None else min(valid_until, float(expires))
        claimed: set[str] = set()

        def claim(raw: str, mac: str, source: str) -> str | None:
            name = raw.strip().lower()
            reason = ("invalid" if not is_label(name) else "reserved" if name in self.reserved
                      else "host-name" if name in host_names and host_names[name] != mac
                      else "taken" if name in claimed else None)
            if reason is not None:
                refused.append(RefusedName(raw, mac, source, reason))
                return None
            claimed.add(name)
            return name

        for raw, addr, mac in reservations:
            a = _address(addr)
            if not raw or a is None or str(mac) in host_macs:  # a host's MAC is found by the host's own name
                continue
            if (name := claim(str(raw), str(mac), "reservation")) is not None:
                entries.append(NameEntry(name, a, "reservation"))
        for mac, raw, addr, expires in leases:
            a = _address(addr)
            if not raw or a is None or str(mac) in host_macs:  # never overrides a configured host's name
                continue
            if (name := claim(str(raw), str(mac), "lease")) is not None:
                entries.append(NameEntry(name, a, "lease"))
                valid_until = float(expires) if valid_until is None else min(valid_until, float(expires))
        # The SOA serial grows on every change of the names (the clock keeps it growing across restarts)
        # and stays when a commit touched something else (a lease without a name, a machine sighting):
        # consumers rebuild what they derive from the names only when the serial moved.
        new = tuple(entries)
        if previous is not None and previous.entries == new:
            serial = previous.serial
        else:
            serial = max((previous.serial if previous else 0) + 1, int(now)) & 0xFFFFFFFF
        return NameSnapshot(entries=new, serial=serial, built_at=now, valid_until=valid_until, refused=tuple(refused))


def _address(value: object) -> IPv4Address | None:
    # A row with a broken address is skipped, not allowed to stop every other name from resolving.
    try:
        return IPv4Address(int(value))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
