"""The `hosts` table: every SQL statement on it lives here, and `Host` is the one type of a stored host.

A host is a named machine the operator told us about (hostname, MAC, image). The rules about which
changes are allowed live above (domain/hostbook.py, domain/host_states.py); the other state modules (installs,
updates, mirror, names, credentials, satellites) read and write hosts through these functions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from state.lease_rows import reserved_ip
from state.schema import EFFECTIVE_COLUMNS, HOST_COLUMNS, PROFILE_JOIN

HOST_STATES = ("new", "assigned", "installing", "installed", "failed")

_COLUMNS = HOST_COLUMNS


@dataclass(frozen=True, slots=True)
class Host:
    """A stored host; what it shows of itself (no install token) is domain.hostadmin.HostRecord."""

    name: str
    mac: str | None
    ip: IPv4Address | None
    image: str | None
    version: int | None  # None: the image's newest version
    state: str  # one of HOST_STATES
    created: float
    updated: float
    last_seen: float | None = None
    install_token: str | None = None
    running_version: int | None = None
    transport: str | None = None  # None: the image's default (state/transports.py)
    token_issued: float | None = None  # NULL: a token from before the column (no known age)
    script: str | None = None  # the host's own autoinstall script (text, or a file name under scripts/)
    last_update: float | None = None  # when updateclient last finished on the host
    profile: str | None = None  # the profile it inherits from (state/profiles.py), None: none
    kernel_args: str | None = None  # added to the installer's command line; None: its profile's, else none

    @property
    def script_override(self) -> bool:
        return bool(self.script)

    @classmethod
    def from_row(cls, row: sqlite3.Row | tuple[Any, ...]) -> Host:
        values = dict(zip(_COLUMNS, tuple(row), strict=True))
        ip = values["ip"]
        values["ip"] = IPv4Address(ip) if ip is not None else None
        return cls(**values)


def host_by_mac(conn: sqlite3.Connection, mac: str) -> Host | None:
    """The host whose MAC is `mac` (canonical 'aa:bb:cc:dd:ee:ff'), or None."""
    row = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM hosts WHERE mac = ?", (mac,)).fetchone()
    return Host.from_row(row) if row is not None else None


# --------------------------------------------------------------------------- effective hosts
#
# A host with what it inherits from its profile filled in (image, version, transport, kernel arguments, root-
# device hints): the `hosts_effective` view, built from state.schema.INHERITED, the rule's one home. What a
# machine boots and installs is decided on these; edits read and write the hosts rows themselves (a host's
# own values) and check a change on `inherited`, the same rule applied to values not written yet.


def inherited(conn: sqlite3.Connection, host: Host) -> Host:
    """`host` as it would be read through `hosts_effective` (it need not be written: a change being checked)."""
    row = conn.execute(f"SELECT {EFFECTIVE_COLUMNS} FROM (SELECT {', '.join(f'? AS {c}' for c in _COLUMNS)}) h "
                       f"{PROFILE_JOIN}", _row(host)).fetchone()
    return Host.from_row(row)


def bmc_sources(conn: sqlite3.Connection, names: list[str] | None = None) -> dict[str, str]:
    """Name -> whose BMC the host's power actions use ("host": its own, "profile": its profile's defaults), for
    those of `names` (None: every host) that have one."""
    if names is None:
        return {r[0]: str(r[1]) for r in conn.execute(
            "SELECT name, bmc_from FROM hosts_effective WHERE bmc_from IS NOT NULL ORDER BY name")}
    out: dict[str, str] = {}
    for i in range(0, len(names), 500):
        chunk = names[i:i + 500]
        rows = conn.execute("SELECT name, bmc_from FROM hosts_effective "
                            f"WHERE bmc_from IS NOT NULL AND name IN ({', '.join('?' * len(chunk))})", chunk)
        out.update((r[0], str(r[1])) for r in rows)
    return out


def effective_root_hints(conn: sqlite3.Connection, names: list[str]) -> dict[str, tuple[str, str]]:
    """Name -> (hints as stored, whose: "host", "profile" or "image") for those of `names` whose installs
    apply root-device hints (the host's own, else its profile's, else its image's)."""
    out: dict[str, tuple[str, str]] = {}
    for i in range(0, len(names), 500):
        chunk = names[i:i + 500]
        rows = conn.execute("SELECT name, root_hints, root_hints_from FROM hosts_effective "
                            f"WHERE root_hints IS NOT NULL AND name IN ({', '.join('?' * len(chunk))})", chunk)
        out.update((r[0], (str(r[1]), str(r[2]))) for r in rows)
    return out


def effective_host_by_mac(conn: sqlite3.Connection, mac: str) -> Host | None:
    row = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM hosts_effective WHERE mac = ?", (mac,)).fetchone()
    return Host.from_row(row) if row is not None else None


def effective_host_by_name(conn: sqlite3.Connection, name: str) -> Host | None:
    row = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM hosts_effective WHERE name = ?", (name,)).fetchone()
    return Host.from_row(row) if row is not None else None


def effective_hosts(conn: sqlite3.Connection, names: list[str]) -> dict[str, Host]:
    """Name -> the host with its inherited values, for those of `names` that are hosts."""
    out: dict[str, Host] = {}
    for i in range(0, len(names), 500):
        chunk = names[i:i + 500]
        rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM hosts_effective "
                            f"WHERE name IN ({', '.join('?' * len(chunk))})", chunk)
        out.update((h.name, h) for h in map(Host.from_row, rows))
    return out


def effective_hosts_for_macs(conn: sqlite3.Connection, macs: list[str]) -> dict[str, Host]:
    """MAC -> the host with its inherited values (what the machines list decides boots on)."""
    out: dict[str, Host] = {}
    for i in range(0, len(macs), 500):
        chunk = macs[i:i + 500]
        rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM hosts_effective "
                            f"WHERE mac IN ({', '.join('?' * len(chunk))})", chunk)
        out.update((h.mac, h) for h in map(Host.from_row, rows) if h.mac is not None)
    return out


def names_with_profile(conn: sqlite3.Connection, profile: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM hosts WHERE profile = ? ORDER BY name", (profile,))]


def is_host(conn: sqlite3.Connection, mac: str) -> bool:
    """Whether some host has MAC `mac`: host_by_mac without building the row (the machine log asks this
    for every machine it evicts, on the event loop, once per new MAC while a flood fills the table)."""
    return conn.execute("SELECT 1 FROM hosts WHERE mac = ?", (mac,)).fetchone() is not None


def hosts_among(conn: sqlite3.Connection, macs: list[str]) -> list[str]:
    """Which of `macs` belong to a host: is_host for a few at once (the machine log evicts in small
    batches while a flood of new MACs fills its table, and asks once per batch)."""
    if not macs:
        return []
    marks = ",".join("?" * len(macs))
    return [r[0] for r in conn.execute(f"SELECT mac FROM hosts WHERE mac IN ({marks})", macs)]


def hosts_by_mac(conn: sqlite3.Connection) -> dict[str, tuple[str, str]]:
    """MAC -> (host name, host state) for every host that has a MAC."""
    return {r[0]: (r[1], r[2]) for r in conn.execute("SELECT mac, name, state FROM hosts WHERE mac IS NOT NULL")}


def rotate_install_token_op(name: str, old: str, token: str, now: float
                            ) -> Callable[[sqlite3.Connection], str | None]:
    """Replace an expired install token `old` (compare-and-set, like set_install_token_op); returns the one
    in force."""

    def op(conn: sqlite3.Connection) -> str | None:
        conn.execute("UPDATE hosts SET install_token = ?, token_issued = ?, updated = ? "
                     "WHERE name = ? AND install_token = ?", (token, now, now, name, old))
        row = conn.execute("SELECT install_token FROM hosts WHERE name = ?", (name,)).fetchone()
        return row[0] if row is not None else None

    return op


def set_install_token_op(name: str, token: str, now: float) -> Callable[[sqlite3.Connection], str | None]:
    """A journal operation giving host `name` an install token if it has none; returns the token in force.

    Compare-and-set, so two boot requests racing for the same host agree on one token.
    """

    def op(conn: sqlite3.Connection) -> str | None:
        conn.execute("UPDATE hosts SET install_token = ?, token_issued = ?, updated = ? "
                     "WHERE name = ? AND install_token IS NULL", (token, now, now, name))
        row = conn.execute("SELECT install_token FROM hosts WHERE name = ?", (name,)).fetchone()
        return row[0] if row is not None else None

    return op


def token_issued(conn: sqlite3.Connection, name: str) -> float | None:
    """When host `name`'s install token was issued (None: no such host, or a token older than the column)."""
    row = conn.execute("SELECT token_issued FROM hosts WHERE name = ?", (name,)).fetchone()
    return row[0] if row is not None else None


def host_count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM hosts").fetchone()[0])


def touch_host_op(name: str, now: float) -> Callable[[sqlite3.Connection], None]:
    """A journal operation recording that host `name` was seen booting now."""

    def op(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE hosts SET last_seen = ? WHERE name = ? AND (last_seen IS NULL OR last_seen < ?)",
                     (now, name, now))

    return op


# --------------------------------------------------------------------------- write side
#
# Creating, editing and removing hosts. Reads take a connection; writes are journal operations
# (functions of a connection), so the daemon's group committer and an offline CLI transaction run
# the same code. Keeping a host's reservation in step with it is domain.hostbook's job.

Op = Callable[[sqlite3.Connection], Any]


class HostClash(ValueError):
    """A write the table's unique constraints refused (a name, MAC or address taken by a change committed
    after the checks ran); the message is the constraint's."""


def _select(where: str = "", order: str = "") -> str:
    return f"SELECT {', '.join(_COLUMNS)} FROM hosts {where} {order}".strip()


def host_by_name(conn: sqlite3.Connection, name: str) -> Host | None:
    row = conn.execute(_select("WHERE name = ?"), (name,)).fetchone()
    return Host.from_row(row) if row is not None else None


def host_by_ip(conn: sqlite3.Connection, ip: IPv4Address) -> Host | None:
    row = conn.execute(_select("WHERE ip = ?"), (int(ip),)).fetchone()
    return Host.from_row(row) if row is not None else None


def list_hosts(conn: sqlite3.Connection) -> list[Host]:
    """Every host in address order (an addclients range reads www1, www2, ...), address-less ones last by name."""
    rows = conn.execute(_select(order="ORDER BY ip IS NULL, ip, name")).fetchall()
    return [Host.from_row(r) for r in rows]


def insert_host_op(host: Host) -> Op:
    def op(conn: sqlite3.Connection) -> None:
        insert_host(conn, host)

    return op


_UPDATABLE = ("mac", "ip", "image", "version", "state", "script", "running_version", "install_token", "transport",
              "profile", "kernel_args")


def update_host_op(name: str, changes: dict[str, Any], now: float) -> Op:
    """Set columns of host `name` (ip as an IPv4Address or None). Returns whether the host existed."""
    unknown = set(changes) - set(_UPDATABLE)
    if unknown:
        # a caller's mistake: the rules (domain.hostbook) refuse an unknown field first
        raise ValueError(f"cannot set {', '.join(sorted(unknown))} of a host")
    values = {k: (int(v) if k == "ip" and v is not None else v) for k, v in changes.items()}

    def op(conn: sqlite3.Connection) -> bool:
        sets = ", ".join(f"{k} = ?" for k in values)
        try:
            cur = conn.execute(f"UPDATE hosts SET {sets}{', ' if sets else ''}updated = ? WHERE name = ?",
                               (*values.values(), now, name))
        except sqlite3.IntegrityError as e:
            raise HostClash(str(e)) from None
        return bool(cur.rowcount)

    return op


def delete_host_op(name: str) -> Op:
    def op(conn: sqlite3.Connection) -> bool:
        return bool(conn.execute("DELETE FROM hosts WHERE name = ?", (name,)).rowcount)

    return op


# --------------------------------------------------------------------------- listing, batched
#
# The operator's views of many hosts at once (API, dashboard, CLI): one query per table for a page of
# hosts, never one per host (a 10,000-host fleet is listed in milliseconds).


def host_records(conn: sqlite3.Connection, *, limit: int | None = None, offset: int = 0) -> list[Host]:
    """Hosts by name, one page (`limit` None: all of them)."""
    sql = _select(order="ORDER BY name")
    args: tuple[Any, ...] = ()
    if limit is not None:
        sql += " LIMIT ? OFFSET ?"
        args = (limit, offset)
    return [Host.from_row(r) for r in conn.execute(sql, args)]


def hosts_for_macs(conn: sqlite3.Connection, macs: list[str]) -> dict[str, Host]:
    """MAC -> Host for those of `macs` that are a host's (one query per 500 MACs)."""
    out: dict[str, Host] = {}
    for i in range(0, len(macs), 500):
        chunk = macs[i:i + 500]
        rows = conn.execute(_select(f"WHERE mac IN ({', '.join('?' * len(chunk))})"), chunk)
        out.update((h.mac, h) for h in map(Host.from_row, rows) if h.mac is not None)
    return out


def host_macs(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT mac FROM hosts WHERE mac IS NOT NULL")}


def host_state_counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in conn.execute("SELECT state, count(*) FROM hosts GROUP BY state")}


def fixed_address(conn: sqlite3.Connection, name: str) -> tuple[Host, IPv4Address | None] | None:
    """Host `name` and its fixed address: its own, else its MAC's reservation (never a lease); None: no host."""
    host = host_by_name(conn, name)
    if host is None:
        return None
    if host.ip is not None or host.mac is None:
        return host, host.ip
    return host, reserved_ip(conn, host.mac)


# --------------------------------------------------------------------------- for the other state modules
#
# The statements installs, updates, mirror, names, credentials, satellites and the bulk loader make on
# hosts; they call these, so the table has one owner.


def host_exists(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM hosts WHERE name = ?", (name,)).fetchone() is not None


def insert_host(conn: sqlite3.Connection, host: Host) -> None:
    """Write a new hosts row with every column of `host` (HostClash if the name, MAC or address is taken)."""
    try:
        conn.execute(f"INSERT INTO hosts({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                     _row(host))
    except sqlite3.IntegrityError as e:
        raise HostClash(str(e)) from None


def insert_hosts(conn: sqlite3.Connection, hosts: Iterable[Host]) -> None:
    """Many new rows at once (bench and test fleets)."""
    conn.executemany(f"INSERT INTO hosts({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                     (_row(h) for h in hosts))


def _row(host: Host) -> tuple[Any, ...]:
    return tuple(int(v) if isinstance(v, IPv4Address) else v for v in (getattr(host, c) for c in _COLUMNS))


def delete_host(conn: sqlite3.Connection, name: str) -> int:
    return int(conn.execute("DELETE FROM hosts WHERE name = ?", (name,)).rowcount)


def delete_holders(conn: sqlite3.Connection, name: str, mac: str | None, ip: int | None) -> None:
    """Remove the hosts other than `name` that hold `mac` or `ip` (a mirror's local leftovers)."""
    conn.execute("DELETE FROM hosts WHERE name != ? AND (mac = ? OR ip = ?)", (name, mac, ip))


def first_without_mac(conn: sqlite3.Connection) -> Host | None:
    """The first host (address order) that has no MAC yet: the next name of an addclients range."""
    row = conn.execute(_select("WHERE mac IS NULL", "ORDER BY ip IS NULL, ip, name LIMIT 1")).fetchone()
    return Host.from_row(row) if row is not None else None


def address_op(name: str, ip: IPv4Address, now: float) -> Op:
    """Give host `name` the address of its new reservation if it has none (and no other host has it):
    it is then listed with it, in /hosts and `hosts export`. Never fails: a clash just leaves it out."""

    def op(conn: sqlite3.Connection) -> bool:
        cur = conn.execute("UPDATE hosts SET ip = ?, updated = ? WHERE name = ? AND ip IS NULL "
                           "AND NOT EXISTS (SELECT 1 FROM hosts WHERE ip = ?)", (int(ip), now, name, int(ip)))
        return bool(cur.rowcount)

    return op


def due_with_token(conn: sqlite3.Connection) -> list[Host]:
    """Hosts due to install (assigned or installing) that have an image (their own or their profile's) and
    an install token, with their inherited values."""
    rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM hosts_effective WHERE state IN ('assigned', "
                        "'installing') AND image IS NOT NULL AND install_token IS NOT NULL").fetchall()
    return [Host.from_row(r) for r in rows]


def count_due_to_install(conn: sqlite3.Connection, image: str) -> int:
    """How many hosts are due to install `image` (new, assigned or installing)."""
    row = conn.execute("SELECT count(*) FROM hosts_effective WHERE image = ? "
                       "AND state IN ('new', 'assigned', 'installing')",
                       (image,)).fetchone()
    return int(row[0])


def names_using(conn: sqlite3.Connection, image: str, version: int, *, newest: bool) -> list[str]:
    """Hosts pinned to `version` of `image`, or following the image's newest when `newest` (their own image
    or their profile's)."""
    rows = conn.execute(
        "SELECT name FROM hosts_effective WHERE image = ? AND (version = ? OR (version IS NULL AND ?)) ORDER BY name",
        (image, version, 1 if newest else 0)).fetchall()
    return [r[0] for r in rows]


def record_install_stage(conn: sqlite3.Connection, name: str, state: str | None, now: float,
                         running_version: int | None = None) -> None:
    """An install report seen: the host's new state (None: unchanged, only last_seen) and, when installed,
    the version it now runs (None: unchanged)."""
    if state is None:
        conn.execute("UPDATE hosts SET last_seen = ? WHERE name = ?", (now, name))
    elif state == "installed":
        conn.execute("UPDATE hosts SET state = 'installed', running_version = coalesce(?, running_version), "
                     "updated = ?, last_seen = ? WHERE name = ?", (running_version, now, now, name))
    else:
        conn.execute("UPDATE hosts SET state = ?, updated = ?, last_seen = ? WHERE name = ?",
                     (state, now, now, name))


def reassign(conn: sqlite3.Connection, name: str, token: str, now: float) -> bool:
    """State assigned with a fresh install token (a reinstall); whether the host exists."""
    cur = conn.execute("UPDATE hosts SET state = 'assigned', install_token = ?, token_issued = ?, updated = ? "
                       "WHERE name = ?", (token, now, now, name))
    return bool(cur.rowcount)


def record_update_done(conn: sqlite3.Connection, name: str, version: int, now: float) -> None:
    """updateclient finished: the version the host now runs, and when."""
    conn.execute("UPDATE hosts SET running_version = ?, last_update = ?, updated = ? WHERE name = ?",
                 (version, now, now, name))


def name_mac_ip_rows(conn: sqlite3.Connection) -> list[tuple[str, str | None, int | None]]:
    """(name, MAC, address as stored) of every host by name: what the DNS names are built from (raw, so a
    bad stored address is refused there, not here)."""
    return [(r[0], r[1], r[2]) for r in conn.execute("SELECT name, mac, ip FROM hosts ORDER BY name")]


def first_hosts(conn: sqlite3.Connection, limit: int, *, effective: bool = False) -> list[Host]:
    """The first `limit` hosts by name (`effective`: with what each inherits from its profile)."""
    sql = (f"SELECT {', '.join(_COLUMNS)} FROM hosts_effective ORDER BY name LIMIT ?" if effective
           else _select(order="ORDER BY name LIMIT ?"))
    return [Host.from_row(r) for r in conn.execute(sql, (limit,))]


def names_among(conn: sqlite3.Connection, names: Sequence[str]) -> set[str]:
    """Which of `names` are hosts."""
    out: set[str] = set()
    for i in range(0, len(names), 500):  # SQLite's bound-parameter limit
        chunk = list(names[i:i + 500])
        out.update(r[0] for r in conn.execute(f"SELECT name FROM hosts WHERE name IN ({','.join('?' * len(chunk))})",
                                              chunk))
    return out


def profile_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Profile name -> how many hosts name it."""
    return {r[0]: int(r[1]) for r in
            conn.execute("SELECT profile, count(*) FROM hosts WHERE profile IS NOT NULL GROUP BY profile")}


def profiles_of(conn: sqlite3.Connection, names: Sequence[str]) -> dict[str, str]:
    """Host name -> the profile it names, for those of `names` that name one."""
    out: dict[str, str] = {}
    for i in range(0, len(names), 500):
        chunk = list(names[i:i + 500])
        rows = conn.execute("SELECT name, profile FROM hosts WHERE profile IS NOT NULL "
                            f"AND name IN ({','.join('?' * len(chunk))})", chunk)
        out.update((r[0], str(r[1])) for r in rows)
    return out
