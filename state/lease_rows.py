"""Leases and reservations as records, and their SQL: the rows the lease book writes through (one
operation per change, or LEASE_ROWS batched by the writer), the reads it loads from, and what callers
without a live book read from the database."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from state.writeback import RowKind, WriteBack

Op = Callable[[sqlite3.Connection], Any]


# Not frozen (but hashable, and never changed after construction): a frozen dataclass's __init__ sets each
# field through object.__setattr__, 5x the cost of a plain one, and one of these is built for every packet.
@dataclass(slots=True, unsafe_hash=True)
class Lease:
    mac: str
    ip: IPv4Address
    subnet: str
    starts: float
    expires: float
    client_id: bytes | None = None
    hostname: str | None = None

    def active(self, now: float) -> bool:
        return self.expires > now

    def as_dict(self, now: float) -> dict[str, Any]:
        return {"mac": self.mac, "ip": str(self.ip), "subnet": self.subnet, "hostname": self.hostname,
                "starts": self.starts, "expires": self.expires, "active": self.active(now),
                "client_id": self.client_id.hex() if self.client_id else None}


@dataclass(frozen=True, slots=True)
class Reservation:
    mac: str
    ip: IPv4Address
    hostname: str | None
    source: str
    created: float
    # A reservation as a binding never expires (the DHCP reply logic reads `expires`).
    expires: None = None

    def as_dict(self) -> dict[str, Any]:
        return {"mac": self.mac, "ip": str(self.ip), "hostname": self.hostname, "source": self.source,
                "created": self.created}


# ---------------------------------------------------------------- loading (by the book, at start)


def read_leases(conn: sqlite3.Connection) -> Iterator[tuple[int, Lease]]:
    """Every stored lease (expired ones too: a client gets its old address back), with its address as int."""
    for row in conn.execute("SELECT mac, ip, subnet, starts, expires, client_id, hostname FROM leases"):
        yield row[1], Lease(row[0], IPv4Address(row[1]), row[2], row[3], row[4],
                            bytes(row[5]) if row[5] is not None else None, row[6])


def read_reservations(conn: sqlite3.Connection) -> Iterator[tuple[int, Reservation]]:
    for row in conn.execute("SELECT mac, ip, hostname, source, created FROM reservations"):
        yield row[1], Reservation(row[0], IPv4Address(row[1]), row[2], row[3], row[4])


def read_quarantine(conn: sqlite3.Connection, now: float) -> Iterator[tuple[int, float]]:
    """(address, until) of the quarantines still in force at `now`."""
    yield from conn.execute("SELECT ip, until FROM quarantine WHERE until > ?", (now,))


# ---------------------------------------------------------------- write-through operations


def lease_row(lease: Lease) -> tuple[Any, ...]:
    return (lease.mac, int(lease.ip), lease.subnet, lease.starts, lease.expires, lease.client_id, lease.hostname)


def _write_leases(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    # One statement, so one round on the writer thread: REPLACE removes whatever row holds the MAC (the
    # client's previous lease) or the address (another machine's expired lease, taken over; UNIQUE(ip)),
    # then inserts. Rows are applied in order, so a run has exactly the effect of writing row by row;
    # nothing references leases, so replacing a row equals updating it.
    values = ",".join(["(?,?,?,?,?,?,?)"] * len(rows))
    conn.execute(f"INSERT OR REPLACE INTO leases(mac, ip, subnet, starts, expires, client_id, hostname) "
                 f"VALUES {values}", [x for r in rows for x in r])


LEASE_ROWS = RowKind("leases", _write_leases, one_statement=True)


def end_lease(mac: str, now: float) -> Op:
    return lambda conn: conn.execute("UPDATE leases SET expires = ? WHERE mac = ?", (now, mac))


def delete_lease(mac: str) -> Op:
    return lambda conn: conn.execute("DELETE FROM leases WHERE mac = ?", (mac,))


def put_quarantine(n: int, mac: str | None, until: float) -> Op:
    return lambda conn: conn.execute("INSERT OR REPLACE INTO quarantine(ip, mac, until) VALUES (?,?,?)",
                                     (n, mac, until))


def delete_quarantine(n: int, until: float) -> Op:
    return lambda conn: conn.execute("DELETE FROM quarantine WHERE ip = ? AND until <= ?", (n, until))


def upsert_reservation(res: Reservation) -> Op:
    row = (res.mac, int(res.ip), res.hostname, res.source, res.created)

    def op(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM leases WHERE ip = ? AND mac <> ?", (row[1], row[0]))
        conn.execute("INSERT INTO reservations(mac, ip, hostname, source, created) VALUES (?,?,?,?,?) "
                     "ON CONFLICT(mac) DO UPDATE SET ip=excluded.ip, hostname=excluded.hostname, "
                     "source=excluded.source", row)
    return op


def delete_reservation(mac: str) -> Op:
    return lambda conn: conn.execute("DELETE FROM reservations WHERE mac = ?", (mac,))


def lease_to_reservation(res: Reservation) -> Op:
    row = (res.mac, int(res.ip), res.hostname, res.source, res.created)

    def op(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM leases WHERE mac = ?", (row[0],))
        conn.execute("INSERT INTO reservations(mac, ip, hostname, source, created) VALUES (?,?,?,?,?)", row)
    return op


# ---------------------------------------------------------------- wiring helpers


def durable_binding(conn: sqlite3.Connection, mac: str) -> tuple[IPv4Address, float | None] | None:
    """What the database (not the model) holds for `mac`: its reservation (no end), else its lease and its end.

    For answering while commits fail: the model may be ahead of the disk, the disk is what a restart knows.
    """
    row = conn.execute("SELECT ip FROM reservations WHERE mac = ?", (mac,)).fetchone()
    if row is not None:
        return IPv4Address(row[0]), None
    row = conn.execute("SELECT ip, expires FROM leases WHERE mac = ?", (mac,)).fetchone()
    return (IPv4Address(row[0]), float(row[1])) if row is not None else None


def reserved_ip(conn: sqlite3.Connection, mac: str) -> IPv4Address | None:
    """The address stored as the MAC's reservation, if any."""
    row = conn.execute("SELECT ip FROM reservations WHERE mac = ?", (mac,)).fetchone()
    return IPv4Address(row[0]) if row is not None else None


def active_lease_rows(conn: sqlite3.Connection, now: float) -> list[tuple[str, str | None, int, float]]:
    """(mac, hostname, ip as stored, expires) of every lease not ended at `now`, oldest first."""
    return [tuple(r) for r in conn.execute(
        "SELECT mac, hostname, ip, expires FROM leases WHERE expires > ? ORDER BY starts, mac", (now,))]


def reservation_rows(conn: sqlite3.Connection) -> list[tuple[str | None, int, str]]:
    """(hostname, ip as stored, mac) of every reservation, oldest first."""
    return [tuple(r) for r in conn.execute(
        "SELECT hostname, ip, mac FROM reservations ORDER BY created, mac")]


def active_lease_count(conn: sqlite3.Connection, now: float) -> int:
    return int(conn.execute("SELECT count(*) FROM leases WHERE expires > ?", (now,)).fetchone()[0])


def insert_leases(conn: sqlite3.Connection, leases: Iterable[Lease]) -> None:
    """Many lease rows at once (bench and test fleets)."""
    conn.executemany("INSERT INTO leases(mac, ip, subnet, starts, expires, client_id, hostname) "
                     "VALUES (?,?,?,?,?,?,?)", (lease_row(x) for x in leases))


def journal_writer(submit: Callable[[Op], Any]) -> WriteBack:
    """The daemon's writer for the models: `journal.submit`, one operation per commit (see writeback)."""
    return WriteBack(submit)


@contextmanager
def offline_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One transaction around offline changes (the connection is in autocommit mode)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def stored_addresses(conn: sqlite3.Connection, now: float) -> tuple[list[int], list[int], list[int]]:
    """Addresses as stored (no live lease book): active leases, reservations, quarantined ones (as ints)."""
    active = [int(r[0]) for r in conn.execute("SELECT ip FROM leases WHERE expires > ?", (now,))]
    reserved = [int(r[0]) for r in conn.execute("SELECT ip FROM reservations")]
    quarantined = [int(r[0]) for r in conn.execute("SELECT ip FROM quarantine WHERE until > ?", (now,))]
    return active, reserved, quarantined


def stored_bindings(conn: sqlite3.Connection, macs: list[str]) -> dict[str, tuple[str, int, Any]]:
    """MAC -> ("reservation", ip, source) or ("lease", ip, expires), as stored (no live lease book);
    one query per table per 500 MACs."""
    out: dict[str, tuple[str, int, Any]] = {}
    for i in range(0, len(macs), 500):
        chunk = macs[i:i + 500]
        marks = ", ".join("?" * len(chunk))
        for mac, ip, expires in conn.execute(f"SELECT mac, ip, expires FROM leases WHERE mac IN ({marks})", chunk):
            out[mac] = ("lease", int(ip), expires)
        for mac, ip, source in conn.execute(f"SELECT mac, ip, source FROM reservations WHERE mac IN ({marks})",
                                            chunk):
            out[mac] = ("reservation", int(ip), source)  # a reservation wins over a lease
    return out
