"""Machines seen on the wire (table `machines`): every DHCP client, known or not.

Discovery lists these (what arch, which firmware, behind which relay). A booting machine sends a
dozen packets a minute, so a row is written only when the machine is new, when something about it
changed, or when its recorded last_seen is more than `refresh` seconds old; the rest stays in memory.
Writes go through the same writer as leases (the journal's group commit in the daemon).

The table is capped (`cap`), because anyone on the LAN can make up MACs: an unknown machine not seen
for `expiry` seconds is forgotten, and when a new machine finds the table full the least recently seen
unknown one makes room. Hosts (`protected`) are never evicted; a new unknown machine that finds the
table full of hosts is answered but not recorded. Evictions delete the row, so memory and store agree.
A full table makes room for a few at once (up to 64, 1/64 of the cap), so a flood of new MACs asks
`hosts_among` (one query on the event loop) once per few dozen new machines, not once per machine.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from itertools import islice
from typing import Any

from state.eventlog import EventLog
from state.writeback import RowKind, WriteBack

log = EventLog("imageserver.state")

Op = Callable[[sqlite3.Connection], Any]
Writer = Callable[[Op], Any]
DEFAULT_CAP = 4096
DEFAULT_EXPIRY = 7 * 86400.0
SWEEP_EVERY = 60.0  # seconds between two expiry sweeps (each is one pass over the table)

DETAILS = ("arch", "vendor_class", "user_class", "uuid", "relay", "subnet", "hostname")  # Machine's, in order
# The values of DETAILS, in order (None: not told / not known).
Details = tuple[int | None, str | None, str | None, str | None, str | None, str | None, str | None]
NO_DETAILS: Details = (None, None, None, None, None, None, None)
_DETAIL_SET = frozenset(DETAILS)


# Not frozen (but hashable, and never changed after construction): a frozen dataclass's __init__ sets each
# field through object.__setattr__, 5x the cost of a plain one, and one of these is built for every packet.
@dataclass(slots=True, unsafe_hash=True)
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
    """In-memory view of `machines` that writes through only what is worth a write.

    `_known` is kept in order of last sighting (least recent first), so eviction takes from the front.
    """

    def __init__(self, writer: Writer, *, refresh: float = 60.0, cap: int = DEFAULT_CAP,
                 expiry: float = DEFAULT_EXPIRY, protected: Callable[[str], bool] | None = None,
                 hosts_among: Callable[[list[str]], Iterable[str]] | None = None) -> None:
        self._write = writer
        self.refresh = refresh
        self.cap = cap
        self.expiry = expiry
        protect = protected or (lambda mac: False)
        self._protected = protect
        # `protected` for several MACs at once (which of them are hosts); one query instead of one per MAC.
        self._hosts_among = hosts_among or (lambda macs: [m for m in macs if protect(m)])
        self._known: dict[str, _Entry] = {}
        # Whether _known is in order of last_seen (page() reads from its end), and the last one's last_seen.
        self._in_order = True
        self._tail_seen = -math.inf
        self._swept_at: float | None = None
        self.writes = 0
        self.evicted = 0  # unknown machines forgotten to make room or because they expired
        self.unrecorded = 0  # new machines answered but not recorded (table full of hosts)
        self._logged_at: float | None = None
        self._unlogged = 0

    @classmethod
    def load(cls, conn: sqlite3.Connection, writer: Writer, *, refresh: float = 60.0, cap: int = DEFAULT_CAP,
             expiry: float = DEFAULT_EXPIRY, protected: Callable[[str], bool] | None = None,
             hosts_among: Callable[[list[str]], Iterable[str]] | None = None, now: float | None = None) -> MachineLog:
        log_ = cls(writer, refresh=refresh, cap=cap, expiry=expiry, protected=protected, hosts_among=hosts_among)
        cols = ", ".join(f.name for f in fields(Machine))
        for row in conn.execute(f"SELECT {cols} FROM machines ORDER BY last_seen, mac"):
            m = Machine(*row)
            log_._append(m.mac, _Entry(m, m.last_seen))
        if now is not None:  # a table grown before the cap (or under a larger one) is cut down at start
            log_.expire(now)
            if len(log_._known) > log_.cap:
                log_._evict(now, len(log_._known) - log_.cap)
        return log_

    def seen(self, mac: str, now: float, **details: Any) -> Machine:
        """Record a packet from `mac`. Details left None keep what was known (a ROM's arch stays
        known after the installed OS, which sends none, takes over)."""
        if not _DETAIL_SET.issuperset(details):
            unknown = set(details) - _DETAIL_SET
            raise TypeError(f"unknown machine details: {', '.join(sorted(unknown))}")
        get = details.get
        return self.sighted(mac, now, (get("arch"), get("vendor_class"), get("user_class"), get("uuid"), get("relay"),
                                       get("subnet"), get("hostname")))

    def sighted(self, mac: str, now: float, details: Details = NO_DETAILS) -> Machine:
        """seen() with the details as a tuple in DETAILS order (None: not told), for the per-packet path."""
        entry = self._known.pop(mac, None)  # re-inserted below: the dict stays in order of last sighting
        if entry is None:
            machine = Machine(mac, now, now, *details)
            if not self._make_room(mac, now):
                self.unrecorded += 1
                return machine
            self._append(mac, _Entry(machine, now))
            self._put(machine)
            return machine
        self._append(mac, entry)
        old = entry.machine
        known: Details = (old.arch, old.vendor_class, old.user_class, old.uuid, old.relay, old.subnet, old.hostname)
        # The usual sighting repeats what is known (a machine sends a dozen packets a minute): then
        # only last_seen moves, in memory, and nothing is written until the refresh is due.
        if details in (known, NO_DETAILS):
            merged, changed = known, False  # the merge below would give `known`: skipped, it runs per packet
        else:
            merged = _merged(details, known)
            changed = merged != known
        if changed or now > old.last_seen:
            machine = Machine(mac, old.first_seen, max(now, old.last_seen), *merged)
        else:
            machine = old
        entry.machine = machine
        if machine.last_seen < self._tail_seen:
            self._in_order = False
        self._tail_seen = machine.last_seen
        if changed or now - entry.written_seen >= self.refresh:
            entry.written_seen = machine.last_seen
            self._put(machine)
        return machine

    # ---------------------------------------------------------------- the cap

    def _make_room(self, mac: str, now: float) -> bool:
        """May a new machine be recorded? Expire what is due, then evict until there is room."""
        if self._swept_at is None or now - self._swept_at >= SWEEP_EVERY:
            self.expire(now)
        if len(self._known) >= self.cap:
            need = len(self._known) - self.cap + 1
            if self._evict(now, need, max(need, min(64, self.cap // 64))) < need:
                return self._protected(mac)  # full of hosts: a host is still recorded, an unknown one is not
        return True

    def _evict(self, now: float, need: int, want: int | None = None) -> int:
        """Forget the least recently seen unknown machines: `want` of them (default `need`), fewer if the
        table holds fewer unknown ones than that, stopping once `need` are gone and every machine was
        looked at. Returns how many were forgotten."""
        want = need if want is None else want
        forgotten, looked, total = 0, 0, len(self._known)
        while forgotten < want and looked < total:
            front = list(islice(self._known, min(want - forgotten, total - looked)))
            looked += len(front)
            hosts = set(self._hosts_among(front))
            for mac in front:
                if mac in hosts:  # hosts go to the back, so the next eviction does not look at them again
                    self._known[mac] = self._known.pop(mac)
                    self._in_order = False
                else:
                    self._forget(mac, now)
                    forgotten += 1
        return forgotten

    def expire(self, now: float) -> int:
        """Forget every unknown machine not seen for `expiry` seconds; how many were forgotten."""
        self._swept_at = now
        due = [mac for mac, e in self._known.items() if now - e.machine.last_seen >= self.expiry]
        gone = 0
        for mac in due:
            if not self._protected(mac):
                self._forget(mac, now)
                gone += 1
        return gone

    def _forget(self, mac: str, now: float) -> None:
        del self._known[mac]
        self.evicted += 1
        self._unlogged += 1
        self.writes += 1
        self._row((mac, *(None,) * (len(_COLUMNS) - 1)))  # a row without first_seen deletes
        # One line a minute at most, with the count: a flood of made-up MACs is one line, not one per MAC.
        if self._logged_at is None or now - self._logged_at >= SWEEP_EVERY:
            log.warning("machines-evicted", count=self._unlogged, cap=self.cap, expiry=f"{self.expiry:g}",
                        total_evicted=self.evicted)
            self._logged_at = now
            self._unlogged = 0

    def get(self, mac: str) -> Machine | None:
        entry = self._known.get(mac)
        return entry.machine if entry is not None else None

    def all(self) -> list[Machine]:
        return sorted((e.machine for e in self._known.values()), key=lambda m: (-m.last_seen, m.mac))

    def _append(self, mac: str, entry: _Entry) -> None:
        """Put `entry` last; note whether the dict is still in order of last_seen (a clock step back breaks it)."""
        if entry.machine.last_seen < self._tail_seen:
            self._in_order = False
        self._tail_seen = entry.machine.last_seen
        self._known[mac] = entry

    def page(self, offset: int, limit: int, exclude: set[str] | frozenset[str] = frozenset()
             ) -> tuple[list[Machine], int]:
        """Machines offset..offset+limit, most recently seen first, and how many there are (without `exclude`).

        The dict is kept in order of last sighting (= of last_seen while the clock runs forward), so a page is
        read from its end, not by sorting every machine per request; after a clock step back it is re-sorted
        once."""
        if not self._in_order:
            self._known = {e.machine.mac: e for e in sorted(self._known.values(),
                                                            key=lambda e: (e.machine.last_seen, e.machine.mac))}
            self._in_order = True
            self._tail_seen = next(reversed(self._known.values())).machine.last_seen if self._known else -math.inf
        want = offset + limit
        picked: list[Machine] = []
        prev = math.inf
        for entry in reversed(self._known.values()):
            m = entry.machine
            if len(picked) >= want and m.last_seen < prev:
                break  # the rest were seen earlier still (ties with the page's last one are in)
            prev = m.last_seen
            if m.mac not in exclude:
                picked.append(m)
        picked.sort(key=_recent_first)
        total = len(self._known) - (sum(1 for mac in exclude if mac in self._known) if exclude else 0)
        return picked[offset:want], total

    def __len__(self) -> int:
        return len(self._known)

    def _put(self, m: Machine) -> None:
        self.writes += 1
        self._row((m.mac, m.first_seen, m.last_seen, m.arch, m.vendor_class, m.user_class, m.uuid, m.relay,
                   m.subnet, m.hostname))  # _COLUMNS order

    def _row(self, row: tuple[Any, ...]) -> None:
        if isinstance(self._write, WriteBack):
            self._write.row(MACHINE_ROWS, row)  # bulk, with the other writes of this commit
        else:
            self._write(lambda conn: _write_machines(conn, [row]))


_COLUMNS = tuple(f.name for f in fields(Machine))
assert ("mac", "first_seen", "last_seen", *DETAILS) == _COLUMNS, "MachineLog._put writes rows in this order"


def _write_machines(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Upserts, and deletes (rows whose first_seen is None): the last row of each MAC is what it ends as."""
    last: dict[str, tuple[Any, ...]] = {}
    for r in rows:
        last[r[0]] = r
    upserts = [r for r in last.values() if r[1] is not None]
    deletes = [mac for mac, r in last.items() if r[1] is None]
    if upserts:
        one = "(" + ",".join("?" * len(_COLUMNS)) + ")"
        updates = ", ".join(f"{c}=excluded.{c}" for c in ("last_seen", *DETAILS))
        conn.execute(f"INSERT INTO machines({', '.join(_COLUMNS)}) VALUES {','.join([one] * len(upserts))} "
                     f"ON CONFLICT(mac) DO UPDATE SET {updates}", [x for r in upserts for x in r])
    if deletes:
        conn.execute(f"DELETE FROM machines WHERE mac IN ({','.join('?' * len(deletes))})", deletes)


def _recent_first(m: Machine) -> tuple[float, str]:
    return (-m.last_seen, m.mac)


def machine_arch(conn: sqlite3.Connection, mac: str) -> int | None:
    """The client architecture (option 93) the machine last reported, None if it never did or is not known."""
    row = conn.execute("SELECT arch FROM machines WHERE mac = ?", (mac,)).fetchone()
    return int(row[0]) if row is not None and row[0] is not None else None


def machine_arches(conn: sqlite3.Connection, macs: Iterable[str]) -> dict[str, int]:
    """machine_arch for each of `macs` that reported one (one query)."""
    wanted = sorted(set(macs))
    if not wanted:
        return {}
    rows = conn.execute(f"SELECT mac, arch FROM machines WHERE arch IS NOT NULL AND mac IN "
                        f"({', '.join('?' * len(wanted))})", wanted).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def stored_machines(conn: sqlite3.Connection) -> list[Machine]:
    """Every machine in the table, most recently seen first (for readers without the live log)."""
    rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM machines ORDER BY last_seen DESC, mac").fetchall()
    return [Machine(*tuple(r)) for r in rows]


# Sightings touch only their own rows of their own table, so they may be written before other changes.
# Two statements at most (upserts, deletes); a failure falls back to row by row, and both are idempotent.
MACHINE_ROWS = RowKind("machines", _write_machines, commutes=True, one_statement=True)


def _merged(told: Details, known: Details) -> Details:
    """Each detail as told, else as known (spelled out: the fields differ in type)."""
    arch, vendor_class, user_class, uuid, relay, subnet, hostname = told
    return (known[0] if arch is None else arch, known[1] if vendor_class is None else vendor_class,
            known[2] if user_class is None else user_class, known[3] if uuid is None else uuid,
            known[4] if relay is None else relay, known[5] if subnet is None else subnet,
            known[6] if hostname is None else hostname)


def insert_machines(conn: sqlite3.Connection, machines: Iterable[Machine]) -> None:
    """Many machine rows at once (bench and test fleets)."""
    conn.executemany(f"INSERT INTO machines({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                     (tuple(getattr(m, c) for c in _COLUMNS) for m in machines))
