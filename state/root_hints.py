"""The `root_device_hints` table: which disk an install goes to, per host (kind "host") or per image (kind
"image"); JSON as domain.rootdevice.RootDeviceHints renders it. A removed host's hints go with it (a trigger,
migration 8). Every SQL statement on the table lives here; the rule that applies them is
domain/rootdevice.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Literal

Kind = Literal["host", "image"]
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
