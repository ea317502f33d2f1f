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
            "install_token", "running_version")


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


def image_versions(conn: sqlite3.Connection, image: str) -> tuple[int, ...]:
    """The captured versions of `image`, oldest first (empty if the image does not exist)."""
    rows = conn.execute("SELECT version FROM images WHERE name = ? ORDER BY version", (image,)).fetchall()
    return tuple(int(r[0]) for r in rows)


def set_install_token_op(name: str, token: str, now: float) -> Callable[[sqlite3.Connection], str | None]:
    """A journal operation giving host `name` an install token if it has none; returns the token in force.

    Compare-and-set, so two boot requests racing for the same host agree on one token.
    """

    def op(conn: sqlite3.Connection) -> str | None:
        conn.execute("UPDATE hosts SET install_token = ?, updated = ? WHERE name = ? AND install_token IS NULL",
                     (token, now, name))
        row = conn.execute("SELECT install_token FROM hosts WHERE name = ?", (name,)).fetchone()
        return row[0] if row is not None else None

    return op


def touch_host_op(name: str, now: float) -> Callable[[sqlite3.Connection], None]:
    """A journal operation recording that host `name` was seen booting now."""

    def op(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE hosts SET last_seen = ? WHERE name = ? AND (last_seen IS NULL OR last_seen < ?)",
                     (now, name, now))

    return op
