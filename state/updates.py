"""updateclient on installed hosts: the reports' table (update_events). Which version a host syncs to and
what a report may say are the rules of domain/updates.py.

An installed host runs `updateclient`, which asks for its target (its assigned image and version, or
one it names: rollback and roll-forward), pulls it with rsync from that version's module, and reports
"start", then "done" or "failed". "done" records the version the host now runs (hosts.running_version)
and when (hosts.last_update). "autoinstall" records that the host asked to be installed again.

The reports' credential is the host's install token: the installer had it, the autoinstall script
leaves it in the installed system's /etc/systemimager/updateclient.conf, and a reinstall replaces it
(an old system cannot report into a new install). Reads take a connection; writes are journal
operations (functions of a connection) so the daemon's group committer runs them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from state.hosts import host_by_name, host_exists, record_update_done

Op = Callable[[sqlite3.Connection], Any]


def report_op(host: str, now: float, stage: str, image: str | None, version: int | None,
              detail: str | None) -> Op:
    """Record an update report; "done" sets the version the host runs and when it got there.

    Returns whether the host exists. A "done" for another image than the host's assignment still
    records the version number: running_version means "the tree on the disk", whatever it came from,
    and the report row keeps the image's name.
    """

    def op(conn: sqlite3.Connection) -> bool:
        if not host_exists(conn, host):
            return False
        conn.execute("INSERT INTO update_events(host, time, stage, image, version, detail) VALUES (?,?,?,?,?,?)",
                     (host, now, stage, image, version, detail))
        if stage == "done" and version is not None:
            record_update_done(conn, host, version, now)
        return True

    return op


def last_update(conn: sqlite3.Connection, host: str) -> dict[str, Any] | None:
    """The host's newest update report and when an update last finished, or None if it never ran one."""
    stored = host_by_name(conn, host)
    event = conn.execute("SELECT time, stage, image, version, detail FROM update_events WHERE host = ? "
                         "ORDER BY id DESC LIMIT 1", (host,)).fetchone()
    finished = stored.last_update if stored is not None else None
    if event is None and finished is None:
        return None
    out: dict[str, Any] = {"finished": finished}
    if event is not None:
        out.update(time=event[0], stage=event[1], image=event[2], version=event[3], detail=event[4])
    return out


def update_events(conn: sqlite3.Connection, host: str, limit: int = 50) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT id, time, stage, image, version, detail FROM update_events WHERE host = ? "
                        "ORDER BY id DESC LIMIT ?", (host, limit)).fetchall()
    return [{"id": r[0], "time": r[1], "stage": r[2], "image": r[3], "version": r[4], "detail": r[5]}
            for r in reversed(rows)]
