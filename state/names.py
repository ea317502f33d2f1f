"""Which names the imageserver's DNS serves, read from the store, and rebuilt the moment a table changes.

Sources, in priority order (the first to claim a name keeps it; the first to claim an address owns its PTR):
1. hosts with an address: the names an operator (or `addclients`) gave; the source of truth;
2. reservations with a hostname: static addresses, usually a host's converted lease;
3. active leases whose client sent a hostname (DHCP option 12): machines not yet made hosts, so an
   installer or a discovered machine is reachable by name. These names come from the wire, so only a
   single label is taken (a client must not plant 'www.other.zone' or shadow a subdomain), and among
   clashing clients the most recent lease wins (the machine that is there now).

Change detection is `PRAGMA data_version` on the reader connection: it changes when any *other*
connection commits (the journal's writer thread, an offline CLI), so a check costs one pragma and a
rebuild happens only after a write. Leases also stop counting with time alone, so a snapshot is also
rebuilt once the earliest lease in it has expired.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from ipaddress import IPv4Address


@dataclass(frozen=True, slots=True)
class NameEntry:
    name: str
    address: IPv4Address
    source: str  # "host" | "reservation" | "lease"


@dataclass(frozen=True, slots=True)
class NameSnapshot:
    entries: tuple[NameEntry, ...]  # in priority order
    serial: int  # grows whenever the entries change (SOA serial)
    built_at: float
    valid_until: float | None  # the earliest end of a lease in it; None: only time-independent rows


class NameIndex:
    """The current names, rebuilt lazily: call `snapshot(now)` per query, it is one PRAGMA when nothing changed."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
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
        rows = self._conn.execute("SELECT name, ip FROM hosts WHERE ip IS NOT NULL ORDER BY name").fetchall()
        entries.extend(NameEntry(str(r[0]), a, "host") for r in rows if (a := _address(r[1])) is not None)
        rows = self._conn.execute(
            "SELECT hostname, ip FROM reservations WHERE hostname IS NOT NULL AND hostname != '' "
            "ORDER BY created, mac").fetchall()
        entries.extend(NameEntry(str(r[0]), a, "reservation") for r in rows if (a := _address(r[1])) is not None)
        rows = self._conn.execute(
            "SELECT hostname, ip, expires FROM leases WHERE hostname IS NOT NULL AND hostname != '' "
            "AND expires > ? ORDER BY starts DESC, mac", (now,)).fetchall()
        valid_until: float | None = None
        for r in rows:
            valid_until = float(r[2]) if valid_until is None else min(valid_until, float(r[2]))
            name, address = str(r[0]).strip(), _address(r[1])
            if "." in name or address is None:
                continue
            entries.append(NameEntry(name, address, "lease"))
        # The SOA serial grows on every change of the names (the clock keeps it growing across restarts)
        # and stays when a commit touched something else (a lease without a name, a machine sighting):
        # consumers rebuild what they derive from the names only when the serial moved.
        new = tuple(entries)
        if previous is not None and previous.entries == new:
            serial = previous.serial
        else:
            serial = max((previous.serial if previous else 0) + 1, int(now)) & 0xFFFFFFFF
        return NameSnapshot(entries=new, serial=serial, built_at=now, valid_until=valid_until)


def _address(value: object) -> IPv4Address | None:
    # A row with a broken address is skipped, not allowed to stop every other name from resolving.
    try:
        return IPv4Address(int(value))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
