"""Installs' storage: the install_events table, and the host's state as reports move it (the moves are
domain/install_events.state_after's); a reinstall makes the host assigned with a fresh install token (the
old installer's token stops working).

Every report is a row in install_events (host, mac, time, stage, detail JSON); the timeline of a host
is those rows in order. A failure's stage and reason live in its event's detail, so the hosts table
needs no columns of its own for them. What a report may say and what a timeline means are the rules of
domain/install_events.py; the script a host is served, domain/install_script.py. Reads take a connection;
writes are journal operations (functions of a connection) so the daemon's group committer runs them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from state.hosts import (
    Host,
    count_due_to_install,
    reassign,
    record_install_stage,
)
from state.images import newest

Op = Callable[[sqlite3.Connection], Any]


def resolve_version(conn: sqlite3.Connection, host: Host) -> int | None:
    """The version the host installs: its pinned one, else the image's newest (None: nothing captured)."""
    if host.version is not None:
        return host.version
    top = newest(conn, host.image) if host.image else None
    return top.version if top is not None else None


def due_to_install(conn: sqlite3.Connection, image: str) -> int:
    """How many hosts are due to install (assigned or installing) `image`: the receivers a multicast of it
    waits for."""
    return count_due_to_install(conn, image)


# --------------------------------------------------------------------------- events and transitions


def _event(conn: sqlite3.Connection, name: str, mac: str | None, now: float, stage: str,
           detail: str | None) -> int:
    cur = conn.execute("INSERT INTO install_events(host, mac, time, stage, detail) VALUES (?,?,?,?,?)",
                       (name, mac, now, stage, detail))
    return int(cur.lastrowid or 0)


def record_report(conn: sqlite3.Connection, name: str, mac: str | None, now: float, stage: str,
                  detail: str | None, state: str | None, version: int | None = None) -> None:
    """Store one reported stage as given and the host's new state (None: unchanged, only last seen), both
    decided by domain.install_events.record_op."""
    _event(conn, name, mac, now, stage, detail)
    record_install_stage(conn, name, state, now, version)


def last_stage(conn: sqlite3.Connection, name: str) -> str | None:
    """The last stage host `name` reported other than a final one (None: none)."""
    row = conn.execute("SELECT stage FROM install_events WHERE host = ? AND stage NOT IN ('failed', 'done') "
                       "ORDER BY id DESC LIMIT 1", (name,)).fetchone()
    return str(row[0]) if row is not None else None


def reinstall_op(name: str, token: str, now: float) -> Op:
    """Make the host install again at its next PXE boot: state assigned, a fresh install token."""

    def op(conn: sqlite3.Connection) -> bool:
        if not reassign(conn, name, token, now):
            return False
        _event(conn, name, None, now, "reinstall", None)
        return True

    return op


@dataclass(slots=True)
class LiveProgress:
    """The newest copy progress per host ("progress" reports), in memory only.

    An installer reports every second while it copies; those are not history worth a row each, so
    only the latest one is kept, and only while the daemon runs.
    """

    latest: dict[str, tuple[float, int, int | None]] = field(default_factory=dict)

    def update(self, name: str, now: float, done: int, total: int | None) -> None:
        self.latest[name] = (now, done, total)

    def clear(self, name: str) -> None:
        self.latest.pop(name, None)

    def get(self, name: str) -> tuple[float, int, int | None] | None:
        return self.latest.get(name)


# --------------------------------------------------------------------------- reading


def _event_dict(r: sqlite3.Row | tuple[Any, ...]) -> dict[str, Any]:
    """(id, mac, time, stage, detail) -> the timeline entry (detail decoded from JSON)."""
    detail: Any = None
    if r[4]:
        try:
            detail = json.loads(r[4])
        except ValueError:
            detail = {"text": r[4]}
    return {"id": r[0], "time": r[2], "stage": r[3], "mac": r[1], "detail": detail}


def timeline(conn: sqlite3.Connection, name: str, since_id: int = 0) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT id, mac, time, stage, detail FROM install_events WHERE host = ? AND id > ? "
                        "ORDER BY id", (name, since_id)).fetchall()
    return [_event_dict(r) for r in rows]


def timelines(conn: sqlite3.Connection, names: list[str]) -> dict[str, list[dict[str, Any]]]:
    """host -> its timeline, for a page of hosts: one query per 500 names (not one per host)."""
    out: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for i in range(0, len(names), 500):
        chunk = names[i:i + 500]
        for r in conn.execute("SELECT id, mac, time, stage, detail, host FROM install_events "
                              f"WHERE host IN ({', '.join('?' * len(chunk))}) ORDER BY host, id", chunk):
            out[r[5]].append(_event_dict(r))
    return out


# --------------------------------------------------------------------------- install_events for other modules
#
# The satellite outbox, the install tally (/metrics), the mirror and the bulk loader read and write the
# events through these, so the table has one owner.


def insert_events(conn: sqlite3.Connection, events: Iterable[tuple[str, str | None, float, str]]) -> None:
    """Many (host, mac, time, stage) events at once (bench and test fleets)."""
    conn.executemany("INSERT INTO install_events(host, mac, time, stage) VALUES (?,?,?,?)", events)


def newest_event_id(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(id), 0) FROM install_events").fetchone()[0])


def events_after(conn: sqlite3.Connection, last_id: int, limit: int
                 ) -> list[tuple[int, str, str | None, float, str, str | None]]:
    """(id, host, mac, time, stage, detail) of the events after id `last_id`, oldest first, at most `limit`."""
    return [tuple(r) for r in conn.execute(
        "SELECT id, host, mac, time, stage, detail FROM install_events WHERE id > ? ORDER BY id LIMIT ?",
        (last_id, limit))]


def last_event_time(conn: sqlite3.Connection, name: str) -> float | None:
    """When host `name` last reported (None: never)."""
    value = conn.execute("SELECT max(time) FROM install_events WHERE host = ?", (name,)).fetchone()[0]
    return float(value) if value is not None else None
