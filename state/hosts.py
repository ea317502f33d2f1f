"""The read side of `hosts` the boot path needs: a host by MAC, and its install token.

A host is a named machine the operator told us about (hostname, MAC, image). Creating and editing
hosts is the hosts CLI/API's job; this module only reads them and fills in a missing install token.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, fields
from ipaddress import IPv4Address
from typing import Any

HOST_STATES = ("new", "assigned", "installing", "installed", "failed")

_COLUMNS = ("name", "mac", "ip", "image", "version", "state", "created", "updated", "last_seen",
            "install_token", "running_version", "transport")


@dataclass(frozen=True, slots=True)
class Host:
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

    @classmethod
    def from_row(cls, row: sqlite3.Row | tuple[Any, ...]) -> Host:
        values = dict(zip(_COLUMNS, tuple(row), strict=True))
        ip = values["ip"]
        values["ip"] = IPv4Address(ip) if ip is not None else None
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["ip"] = str(self.ip) if self.ip is not None else None
        out.pop("install_token")  # a secret of the installer; never listed
        return out


def host_by_mac(conn: sqlite3.Connection, mac: str) -> Host | None:
    """The host whose MAC is `mac` (canonical 'aa:bb:cc:dd:ee:ff'), or None."""
    row = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM hosts WHERE mac = ?", (mac,)).fetchone()
    return Host.from_row(row) if row is not None else None


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


def image_versions(conn: sqlite3.Connection, image: str) -> tuple[int, ...]:
    """The captured versions of `image`, oldest first (empty if the image does not exist)."""
    rows = conn.execute("SELECT version FROM images WHERE name = ? ORDER BY version", (image,)).fetchall()
    return tuple(int(r[0]) for r in rows)


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
# the same code. Keeping a host's reservation in step with it is state.hostbook's job.

Op = Callable[[sqlite3.Connection], Any]

# Which state changes an operator (or an install) may make. An installed host goes back to
# "assigned" to install again (reinstall), never straight to "installing": only its installer does that.
TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"assigned", "installing", "installed", "failed"}),
    "assigned": frozenset({"new", "installing", "installed", "failed"}),
    "installing": frozenset({"assigned", "installed", "failed"}),
    "installed": frozenset({"assigned", "failed"}),
    "failed": frozenset({"assigned", "installed"}),
}


class HostError(ValueError):
    """A host change that is refused (it contradicts what exists); the message says why, for people."""


class HostNotFound(HostError):
    """The change names a host that does not exist."""


class HostFieldError(HostError):
    """The change itself is malformed (a field that cannot be set)."""


class HostInputError(HostError):
    """Refused because the input is malformed (a bad name, version or field), not because of a conflict."""


def check_transition(old: str, new: str) -> None:
    if new not in HOST_STATES:
        raise HostError(f"state {new!r} is not one of {', '.join(HOST_STATES)}")
    if old != new and new not in TRANSITIONS.get(old, frozenset()):
        raise HostError(f"a host cannot go from {old} to {new} (allowed from {old}: "
                        f"{', '.join(sorted(TRANSITIONS.get(old, ()))) or 'nothing'})")


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


def host_script(conn: sqlite3.Connection, name: str) -> str | None:
    row = conn.execute("SELECT script FROM hosts WHERE name = ?", (name,)).fetchone()
    return row[0] if row is not None else None


def insert_host_op(host: Host) -> Op:
    row = (host.name, host.mac, int(host.ip) if host.ip is not None else None, host.image, host.version,
           host.state, host.created, host.updated, host.transport)

    def op(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO hosts(name, mac, ip, image, version, state, created, updated, transport) "
                     "VALUES (?,?,?,?,?,?,?,?,?)", row)

    return op


_UPDATABLE = ("mac", "ip", "image", "version", "state", "script", "running_version", "install_token", "transport")


def update_host_op(name: str, changes: dict[str, Any], now: float) -> Op:
    """Set columns of host `name` (ip as an IPv4Address or None). Returns whether the host existed."""
    unknown = set(changes) - set(_UPDATABLE)
    if unknown:
        raise HostFieldError(f"cannot set {', '.join(sorted(unknown))} of a host")
    values = {k: (int(v) if k == "ip" and v is not None else v) for k, v in changes.items()}

    def op(conn: sqlite3.Connection) -> bool:
        sets = ", ".join(f"{k} = ?" for k in values)
        cur = conn.execute(f"UPDATE hosts SET {sets}{', ' if sets else ''}updated = ? WHERE name = ?",
                           (*values.values(), now, name))
        return bool(cur.rowcount)

    return op


def delete_host_op(name: str) -> Op:
    def op(conn: sqlite3.Connection) -> bool:
        return bool(conn.execute("DELETE FROM hosts WHERE name = ?", (name,)).rowcount)

    return op


def hosts_file(hosts: list[Host], domain: str | None) -> str:
    """/etc/hosts lines for every host with an address: 'IP<TAB>name.domain name'."""
    lines = ["# generated by imageserver (imageserver hosts export); hosts with an address"]
    for h in sorted((h for h in hosts if h.ip is not None), key=lambda h: int(h.ip or 0)):
        names = f"{h.name}.{domain} {h.name}" if domain else h.name
        lines.append(f"{h.ip}\t{names}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- listing, batched
#
# The operator's views of many hosts at once (API, dashboard, CLI): one query per table for a page of
# hosts, never one per host (a 10,000-host fleet is listed in milliseconds).


@dataclass(frozen=True, slots=True)
class HostRecord:
    """A hosts row as the operator sees it: the Host, plus whether it has its own script and its last update."""

    host: Host
    script_override: bool
    last_update: float | None


_RECORD_SQL = (f"SELECT {', '.join(_COLUMNS)}, script IS NOT NULL AND script != '', last_update FROM hosts")


def _record(row: sqlite3.Row | tuple[Any, ...]) -> HostRecord:
    values = tuple(row)
    n = len(_COLUMNS)
    return HostRecord(Host.from_row(values[:n]), bool(values[n]), values[n + 1])


def host_records(conn: sqlite3.Connection, *, limit: int | None = None, offset: int = 0) -> list[HostRecord]:
    """Hosts by name, one page (`limit` None: all of them)."""
    sql = f"{_RECORD_SQL} ORDER BY name"
    args: tuple[Any, ...] = ()
    if limit is not None:
        sql += " LIMIT ? OFFSET ?"
        args = (limit, offset)
    return [_record(r) for r in conn.execute(sql, args)]


def host_record(conn: sqlite3.Connection, name: str) -> HostRecord | None:
    row = conn.execute(f"{_RECORD_SQL} WHERE name = ?", (name,)).fetchone()
    return _record(row) if row is not None else None


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


def versions_of_images(conn: sqlite3.Connection, images: set[str]) -> dict[str, tuple[int, ...]]:
    """Image name -> its captured versions, oldest first, for each of `images` (one query)."""
    if not images:
        return {}
    names = sorted(images)
    out: dict[str, list[int]] = {n: [] for n in names}
    for name, version in conn.execute(
            f"SELECT name, version FROM images WHERE name IN ({', '.join('?' * len(names))}) ORDER BY name, version",
            names):
        out[name].append(int(version))
    return {k: tuple(v) for k, v in out.items()}


def fixed_address(conn: sqlite3.Connection, name: str) -> tuple[Host, IPv4Address | None] | None:
    """Host `name` and its fixed address: its own, else its MAC's reservation (never a lease); None: no host."""
    host = host_by_name(conn, name)
    if host is None:
        return None
    if host.ip is not None or host.mac is None:
        return host, host.ip
    row = conn.execute("SELECT ip FROM reservations WHERE mac = ?", (host.mac,)).fetchone()
    return host, IPv4Address(row[0]) if row is not None else None
