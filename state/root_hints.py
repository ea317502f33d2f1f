"""The `root_device_hints` table: which disk an install goes to, per host (kind "host"), profile ("profile")
or image ("image"); JSON as domain.rootdevice.DiskHints renders it. A removed host's or profile's hints go
with it (triggers, migrations 10 and 11). Which apply to a host (its own, else its profile's, else its
image's) is the hosts_effective view (state/schema.py); the rule that applies them to disks is
domain/rootdevice.py. Every other SQL statement on the table lives here."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Literal

Kind = Literal["host", "profile", "image"]
Op = Callable[[sqlite3.Connection], None]


def hints_of(conn: sqlite3.Connection, kind: Kind, name: str) -> str | None:
    row = conn.execute("SELECT hints FROM root_device_hints WHERE kind = ? AND name = ?", (kind, name)).fetchone()
    return str(row[0]) if row is not None else None


def set_hints_op(kind: Kind, name: str, hints: str | None) -> Op:
    """Set (JSON) or, with None, clear the hints of host or image `name`."""

    def op(conn: sqlite3.Connection) -> None:
        if hints is None:
            conn.execute("DELETE FROM root_device_hints WHERE kind = ? AND name = ?", (kind, name))
        else:
            conn.execute("INSERT INTO root_device_hints(kind, name, hints) VALUES (?, ?, ?) "
                         "ON CONFLICT(kind, name) DO UPDATE SET hints = excluded.hints", (kind, name, hints))

    return op


def hints_of_kind(conn: sqlite3.Connection, kind: Kind) -> dict[str, str]:
    """Name -> hints of every host, profile or image that has some."""
    return {r[0]: str(r[1]) for r in conn.execute("SELECT name, hints FROM root_device_hints WHERE kind = ?",
                                                  (kind,))}
