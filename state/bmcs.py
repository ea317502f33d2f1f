"""The `bmcs` table: each host's baseboard management controller (address, user, password, optional TLS
certificate pin); and the `power_states` table: each host's last power answer (or the BMC's error), whether
the BMC is the host's own or its profile's (state/profiles.py).

The password is a secret: it lives in the state database (0600 in a 0700 dir, state/permissions.py) and is
read only by `bmc_secret`, which the power drivers use; `Bmc` (what views are made of) has no password field,
so no answer or log line can carry it by accident.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from state.hosts import host_exists, names_among

Op = Callable[[sqlite3.Connection], Any]


@dataclass(frozen=True, slots=True)
class Bmc:
    """A host's BMC as it may be shown: everything but the password."""

    host: str
    address: str
    username: str
    fingerprint: str | None
    power: str | None  # on | off: the last answer, None before the first
    error: str | None  # the last call's failure
    checked: float | None


@dataclass(frozen=True, slots=True)
class BmcSecret:
    """What a driver needs to talk to the BMC. Its repr hides the password (a traceback or a log of the
    object never shows it)."""

    host: str
    address: str
    username: str
    password: str
    fingerprint: str | None

    def __repr__(self) -> str:
        return f"BmcSecret(host={self.host!r}, address={self.address!r}, username={self.username!r}, password=***)"


@dataclass(frozen=True, slots=True)
class PowerState:
    """A host's last power answer: `power` on | off (None: not known), `error` the BMC's failure."""

    power: str | None
    error: str | None
    checked: float


_SHOWN = ("SELECT b.host, b.address, b.username, b.fingerprint, s.power, s.error, s.checked "
          "FROM bmcs b LEFT JOIN power_states s ON s.host = b.host")


def bmc_of(conn: sqlite3.Connection, host: str) -> Bmc | None:
    row = conn.execute(f"{_SHOWN} WHERE b.host = ?", (host,)).fetchone()
    return Bmc(*row) if row is not None else None


def power_states_of(conn: sqlite3.Connection, hosts: Sequence[str]) -> dict[str, PowerState]:
    """The last power answer of those of `hosts` that have one (one query per 500 hosts)."""
    out: dict[str, PowerState] = {}
    for i in range(0, len(hosts), 500):
        chunk = list(hosts[i:i + 500])
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(f"SELECT host, power, error, checked FROM power_states WHERE host IN ({marks})",
                                chunk):
            out[row[0]] = PowerState(row[1], row[2], row[3])
    return out


def bmcs_of(conn: sqlite3.Connection, hosts: Sequence[str]) -> dict[str, Bmc]:
    out: dict[str, Bmc] = {}
    for i in range(0, len(hosts), 500):  # SQLite's bound-parameter limit
        chunk = list(hosts[i:i + 500])
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(f"{_SHOWN} WHERE b.host IN ({marks})", chunk):
            out[row[0]] = Bmc(*row)
    return out


def bmc_secrets(conn: sqlite3.Connection, hosts: Sequence[str]) -> dict[str, BmcSecret]:
    """The credentials of the hosts' BMCs, for the drivers only."""
    out: dict[str, BmcSecret] = {}
    for i in range(0, len(hosts), 500):
        chunk = list(hosts[i:i + 500])
        marks = ",".join("?" * len(chunk))
        for row in conn.execute("SELECT host, address, username, password, fingerprint FROM bmcs "
                                f"WHERE host IN ({marks})", chunk):
            out[row[0]] = BmcSecret(*row)
    return out


def set_bmc_op(host: str, address: str, username: str, password: str | None, fingerprint: str | None) -> Op:
    """Give `host` a BMC, or change it; `password` None keeps the stored one. Returns False (and changes
    nothing) when there is no such host, or no password was given for a host without a BMC yet."""

    def op(conn: sqlite3.Connection) -> bool:
        if password is None:
            done = bool(conn.execute("UPDATE bmcs SET address = ?, username = ?, fingerprint = ? WHERE host = ?",
                                     (address, username, fingerprint, host)).rowcount)
        else:
            done = host_exists(conn, host) and bool(conn.execute(
                "INSERT INTO bmcs (host, address, username, password, fingerprint) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(host) DO UPDATE SET address = excluded.address, username = excluded.username, "
                "password = excluded.password, fingerprint = excluded.fingerprint",
                (host, address, username, password, fingerprint)).rowcount)
        if done:  # another BMC: what the old one answered is not known of this one
            forget_power(conn, host)
        return done

    return op


def delete_bmc_op(host: str) -> Op:
    def op(conn: sqlite3.Connection) -> bool:
        forget_power(conn, host)
        return bool(conn.execute("DELETE FROM bmcs WHERE host = ?", (host,)).rowcount)

    return op


def forget_power(conn: sqlite3.Connection, host: str) -> None:
    conn.execute("DELETE FROM power_states WHERE host = ?", (host,))


def forget_power_of(conn: sqlite3.Connection, hosts: Sequence[str]) -> None:
    """The hosts' BMC changed (their profile's): their last answers were another BMC's."""
    conn.executemany("DELETE FROM power_states WHERE host = ?", [(h,) for h in hosts])


def record_power_op(results: Sequence[tuple[str, str | None, str | None]], now: float) -> Op:
    """Each (host, power, error) a BMC call ended with: power None keeps the last known state. A host that is
    gone meanwhile is left out."""

    def op(conn: sqlite3.Connection) -> None:
        known = names_among(conn, [host for host, _, _ in results])
        conn.executemany(
            "INSERT INTO power_states (host, power, error, checked) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(host) DO UPDATE SET power = coalesce(excluded.power, power), error = excluded.error, "
            "checked = excluded.checked",
            [(host, power, error, now) for host, power, error in results if host in known])

    return op
