"""Machines seen on the wire (table `machines`): every DHCP client, known or not.

Discovery lists these (what arch, which firmware, behind which relay). A booting machine sends a
dozen packets a minute, so a row is written only when the machine is new, when something about it
changed, or when its recorded last_seen is more than `refresh` seconds old; the rest stays in memory.
Writes go through the same writer as leases (the journal's group commit in the daemon).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from state.writeback import RowKind, WriteBack

Op = Callable[[sqlite3.Connection], Any]
Writer = Callable[[Op], Any]

DETAILS = ("arch", "vendor_class", "user_class", "uuid", "relay", "subnet", "hostname")  # Machine's, in order
NO_DETAILS: tuple[None, ...] = (None,) * len(DETAILS)
_DETAIL_SET = frozenset(DETAILS)


@dataclass(frozen=True, slots=True)
class Machine:
    mac: str
    first_seen: float
    last_seen: float
    arch: int | None = None  # option 93 (RFC 4578): 0 BIOS, 7 UEFI x64, 16 UEFI HTTP, ...
    vendor_class: str | None = None  # option 60
    user_class: str | None = None  # option 77 ("iPXE" once iPXE runs)
    uuid: str | None = None  # option 97, as 8-4-4-4-12 hex
    relay: str | None = None  # giaddr of the relay it came through, None when directly attached
    subnet: str | None = None
    hostname: str | None = None  # option 12

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class _Entry:
    machine: Machine
    written_seen: float  # last_seen as it is in the database


class MachineLog:
    """In-memory view of `machines` that writes through only what is worth a write."""

    def __init__(self, writer: Writer, *, refresh: float = 60.0) -> None:
        self._write = writer
        self.refresh = refresh
        self._known: dict[str, _Entry] = {}
        self.writes = 0

    @classmethod
    def load(cls, conn: sqlite3.Connection, writer: Writer, *, refresh: float = 60.0) -> MachineLog:
        log = cls(writer, refresh=refresh)
        cols = ", ".join(f.name for f in fields(Machine))
        for row in conn.execute(f"SELECT {cols} FROM machines"):
            m = Machine(*row)
            log._known[m.mac] = _Entry(m, m.last_seen)
        return log

    def seen(self, mac: str, now: float, **details: Any) -> Machine:
        """Record a packet from `mac`. Details left None keep what was known (a ROM's arch stays
        known after the installed OS, which sends none, takes over)."""
        if not _DETAIL_SET.issuperset(details):
            unknown = set(details) - _DETAIL_SET
            raise TypeError(f"unknown machine details: {', '.join(sorted(unknown))}")
        return self.sighted(mac, now, tuple(details.get(k) for k in DETAILS))

    def sighted(self, mac: str, now: float, details: tuple[Any, ...] = NO_DETAILS) -> Machine:
        """seen() with the details as a tuple in DETAILS order (None: not told), for the per-packet path."""
        entry = self._known.get(mac)
        if entry is None:
            machine = Machine(mac, now, now, *details)
            self._known[mac] = _Entry(machine, now)
            self._put(machine)
            return machine
        old = entry.machine
        known = (old.arch, old.vendor_class, old.user_class, old.uuid, old.relay, old.subnet, old.hostname)
        merged = tuple(k if d is None else d for d, k in zip(details, known, strict=True))
        # The usual sighting repeats what is known (a machine sends a dozen packets a minute): then
        # only last_seen moves, in memory, and nothing is written until the refresh is due.
        changed = merged != known
        if changed or now > old.last_seen:
            machine = Machine(mac, old.first_seen, max(now, old.last_seen), *merged)
        else:
            machine = old
        entry.machine = machine
        if changed or now - entry.written_seen >= self.refresh:
            entry.written_seen = machine.last_seen
            self._put(machine)
        return machine

    def get(self, mac: str) -> Machine | None:
        entry = self._known.get(mac)
        return entry.machine if entry is not None else None

    def all(self) -> list[Machine]:
        return sorted((e.machine for e in self._known.values()), key=lambda m: m.last_seen, reverse=True)

    def __len__(self) -> int:
        return len(self._known)

    def _put(self, m: Machine) -> None:
        self.writes += 1
        row = (m.mac, m.first_seen, m.last_seen, m.arch, m.vendor_class, m.user_class, m.uuid, m.relay, m.subnet,
               m.hostname)  # _COLUMNS order
        if isinstance(self._write, WriteBack):
            self._write.row(MACHINE_ROWS, row)  # bulk, with the other writes of this commit
        else:
            self._write(lambda conn: _write_machines(conn, [row]))


_COLUMNS = tuple(f.name for f in fields(Machine))
assert ("mac", "first_seen", "last_seen", *DETAILS) == _COLUMNS, "MachineLog._put writes rows in this order"


def _write_machines(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    one = "(" + ",".join("?" * len(_COLUMNS)) + ")"
    updates = ", ".join(f"{c}=excluded.{c}" for c in ("last_seen", *DETAILS))
    conn.execute(f"INSERT INTO machines({', '.join(_COLUMNS)}) VALUES {','.join([one] * len(rows))} "
                 f"ON CONFLICT(mac) DO UPDATE SET {updates}", [x for r in rows for x in r])


def stored_machines(conn: sqlite3.Connection) -> list[Machine]:
    """Every machine in the table, most recently seen first (for readers without the live log)."""
    rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM machines ORDER BY last_seen DESC").fetchall()
    return [Machine(*tuple(r)) for r in rows]


# Sightings touch only their own rows of their own table, so they may be written before other changes.
MACHINE_ROWS = RowKind("machines", _write_machines, commutes=True, one_statement=True)
