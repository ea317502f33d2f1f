"""The satellite's durable outbox: install reports waiting to reach the primary, in order.

A satellite records its installs in its own install_events like any appliance. Each sync copies the
rows past a cursor into this table in the same transaction that moves the cursor (so a crash neither
loses nor doubles a report), and the link sends the oldest rows to the primary and deletes them once
the primary confirms. While the primary is away the rows wait here, surviving restarts.

Capped at `cap` rows: machines installing while the primary is away for days could otherwise fill the
disk. When full, the oldest row that is not a final report ("done"/"failed": what makes the primary's
host installed or failed) is dropped to make room, and the drop is counted; if every row is final, the
new progress row is dropped instead. A final report is never dropped for a progress one.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from state.installs import events_after, newest_event_id

DEFAULT_CAP = 100_000
FINAL = ("done", "failed")

TABLE = """
CREATE TABLE IF NOT EXISTS satellite_outbox (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    source  INTEGER NOT NULL,   -- install_events.id on this satellite
    host    TEXT NOT NULL,
    mac     TEXT,
    time    REAL NOT NULL,
    stage   TEXT NOT NULL,
    detail  TEXT
);
CREATE TABLE IF NOT EXISTS satellite_cursor (
    one     INTEGER PRIMARY KEY CHECK (one = 1),
    last_event INTEGER NOT NULL,   -- the newest install_events.id copied into the outbox
    dropped INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True, slots=True)
class Pending:
    id: int
    host: str
    mac: str | None
    time: float
    stage: str
    detail: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "host": self.host, "mac": self.mac, "time": self.time, "stage": self.stage,
                "detail": self.detail}


def ensure_tables(conn: sqlite3.Connection) -> None:
    # Statement by statement: executescript would COMMIT the journal's open transaction.
    for statement in TABLE.split(";"):
        if statement.strip():
            conn.execute(statement)


def _cursor(conn: sqlite3.Connection) -> tuple[int, int]:
    row = conn.execute("SELECT last_event, dropped FROM satellite_cursor WHERE one = 1").fetchone()
    if row is None:
        # A new satellite starts from now: installs it recorded before it became one are not the primary's.
        newest = newest_event_id(conn)
        conn.execute("INSERT INTO satellite_cursor(one, last_event) VALUES (1, ?)", (newest,))
        return int(newest), 0
    return int(row[0]), int(row[1])


def collect_op(cap: int = DEFAULT_CAP, batch: int = 1000) -> Any:
    """Copy new install events into the outbox (at most `batch` per call); returns how many."""

    def op(conn: sqlite3.Connection) -> int:
        last, dropped = _cursor(conn)
        rows = events_after(conn, last, batch)
        for r in rows:
            size = conn.execute("SELECT count(*) FROM satellite_outbox").fetchone()[0]
            if size >= cap:
                victim = conn.execute("SELECT id FROM satellite_outbox WHERE stage NOT IN (?, ?) ORDER BY id LIMIT 1",
                                      FINAL).fetchone()
                dropped += 1
                if victim is not None:
                    conn.execute("DELETE FROM satellite_outbox WHERE id = ?", (victim[0],))
                elif r[4] not in FINAL:
                    last = r[0]
                    continue
                else:  # all final and so is this one: the oldest final goes (its host has newer news)
                    conn.execute("DELETE FROM satellite_outbox WHERE id = (SELECT min(id) FROM satellite_outbox)")
            conn.execute("INSERT INTO satellite_outbox(source, host, mac, time, stage, detail) VALUES (?,?,?,?,?,?)",
                         (r[0], r[1], r[2], r[3], r[4], r[5]))
            last = r[0]
        conn.execute("UPDATE satellite_cursor SET last_event = ?, dropped = ? WHERE one = 1", (last, dropped))
        return len(rows)

    return op


def pending(conn: sqlite3.Connection, limit: int) -> list[Pending]:
    rows = conn.execute("SELECT id, host, mac, time, stage, detail FROM satellite_outbox ORDER BY id LIMIT ?",
                        (limit,)).fetchall()
    return [Pending(*r) for r in rows]


def ack_op(upto: int) -> Any:
    """The primary has applied every row up to `upto`: they leave the outbox."""

    def op(conn: sqlite3.Connection) -> int:
        return conn.execute("DELETE FROM satellite_outbox WHERE id <= ?", (upto,)).rowcount

    return op


def backlog(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM satellite_outbox").fetchone()[0])


def dropped(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT dropped FROM satellite_cursor WHERE one = 1").fetchone()
    return int(row[0]) if row else 0
