"""The audit log: every change made through the admin API or the offline CLI, who made it, from where, and
what came of it. In the state database (SQLite, committed with the journal like every other row), so it
survives a crash of the daemon; capped by count and by age ([audit] in the config), pruned as rows are added.

An entry names: when; who (the token's name: "admin" for <state_dir>/admin.token, a named token, or the
local user of the offline CLI); via ("api" or "cli"); from where (the peer address, or the host name of the
CLI's machine); the operation ("POST /api/v1/hosts/{name}/reinstall", or the CLI's verbs); its target (the
path parameters); the fields the request gave (values cut short: a script is not copied into the log); and
the outcome (the HTTP status, or the CLI's exit code).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_ENTRIES = 100_000
DEFAULT_MAX_AGE = 365 * 86400.0
VALUE_CHARS = 120  # a field's value is kept up to this long

TABLE = """
CREATE TABLE IF NOT EXISTS audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          REAL NOT NULL,
    who         TEXT NOT NULL,
    via         TEXT NOT NULL,
    peer        TEXT,
    operation   TEXT NOT NULL,
    target      TEXT,
    fields      TEXT,
    outcome     TEXT NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: float
    who: str
    via: str  # "api" | "cli"
    peer: str | None
    operation: str
    target: str | None
    fields: dict[str, Any]
    outcome: str
    id: int | None = None


def ensure_table(conn: sqlite3.Connection) -> None:
    """Create the table if missing (kept out of state/schema.py's numbered migrations, as satellites are)."""
    conn.execute(TABLE)


def cut(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a request gave, each value cut to VALUE_CHARS (as JSON text when it is not a plain value)."""
    out: dict[str, Any] = {}
    for key, value in list(fields.items())[:32]:
        if value is None or isinstance(value, bool | int | float):
            out[str(key)[:64]] = value
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            out[str(key)[:64]] = text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS] + "..."
    return out


def record_op(entry: AuditEntry, *, max_entries: int = DEFAULT_MAX_ENTRIES,
              max_age: float = DEFAULT_MAX_AGE) -> Callable[[sqlite3.Connection], int]:
    """Add the entry; drop what is beyond the cap or older than max_age. Returns the entry's id."""

    def op(conn: sqlite3.Connection) -> int:
        ensure_table(conn)
        cur = conn.execute("INSERT INTO audit(at, who, via, peer, operation, target, fields, outcome) "
                           "VALUES (?,?,?,?,?,?,?,?)",
                           (entry.at, entry.who, entry.via, entry.peer, entry.operation, entry.target,
                            json.dumps(cut(entry.fields)), entry.outcome))
        new_id = int(cur.lastrowid or 0)
        conn.execute("DELETE FROM audit WHERE id <= ? OR at < ?", (new_id - max_entries, entry.at - max_age))
        return new_id

    return op


def page(conn: sqlite3.Connection, limit: int, offset: int) -> tuple[list[AuditEntry], int]:
    """Entries newest first, one page, and how many there are."""
    try:
        total = int(conn.execute("SELECT count(*) FROM audit").fetchone()[0])
        rows = conn.execute("SELECT id, at, who, via, peer, operation, target, fields, outcome FROM audit "
                            "ORDER BY id DESC LIMIT ? OFFSET ?", (limit, offset)).fetchall()
    except sqlite3.OperationalError:  # no table yet: nothing was ever changed
        return [], 0
    return [AuditEntry(r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7] or "{}"), r[8], r[0]) for r in rows], total
