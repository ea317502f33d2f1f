"""Satellites, on the primary: other appliances that mirror its images and hosts for another rack or subnet.

The primary's admin names a satellite (`imageserver satellites add NAME`); that mints its token, printed
once. The table keeps only the token's SHA-256 (a token is 256 random bits: a plain hash is enough, and a
stolen database does not let anyone pose as the satellite over the API) and the rsync password derived
from the token (rsync's `secrets file` needs the password itself; it opens only the read-only satellite
module). Each contact updates what the status shows: when, from where, which image versions the
satellite holds and how many reports it still has buffered.

The table is capped (MAX_SATELLITES): only the admin adds rows, but nothing here grows without bound.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocols.names import satellite_name
from state.credentials import new_token
from state.hosts import first_hosts, host_exists

MAX_SATELLITES = 64
TOKEN_PREFIX = "sat-"
# The rsync module only satellites may read: the whole images root. "_v0" because no image has a
# version 0 (versions start at 1) and NAME_vN is refused as an image name, so no image module collides.
RSYNC_MODULE = "satellite_v0"
# rsync users of satellites. Host names are rsync users too: a host named "sat-x" would share a user with
# satellite x, so the rsync service leaves such a satellite out (and says so) rather than mix passwords.
RSYNC_USER_PREFIX = "sat-"

TABLE = """
CREATE TABLE IF NOT EXISTS satellites (
    name         TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    rsync_secret TEXT NOT NULL,
    created      REAL NOT NULL,
    last_contact REAL,
    address      TEXT,
    versions     TEXT,            -- JSON: ["web_v1", ...] the satellite holds
    backlog      INTEGER,         -- reports it still buffers
    delivered    INTEGER NOT NULL DEFAULT 0   -- the last outbox id applied here (replays are skipped)
);
"""


class SatelliteError(ValueError):
    """A refused satellite change; the message says why."""


class SatelliteExists(SatelliteError):
    """The name is taken."""


class TooManySatellites(SatelliteError):
    """The table is at its cap."""


@dataclass(frozen=True, slots=True)
class Satellite:
    name: str
    created: float
    last_contact: float | None
    address: str | None
    versions: tuple[str, ...]
    backlog: int | None
    delivered: int

    def as_dict(self, now: float) -> dict[str, Any]:
        return {"name": self.name, "created": self.created, "last_contact": self.last_contact,
                "seconds_since_contact": None if self.last_contact is None else round(now - self.last_contact, 1),
                "address": self.address, "versions": list(self.versions), "backlog": self.backlog,
                "delivered": self.delivered}


def ensure_table(conn: sqlite3.Connection) -> None:
    """Create the table if missing (kept out of state/schema.py's numbered migrations while other
    changes add theirs; `IF NOT EXISTS` makes it safe to run at every start and from the CLI)."""
    # Statement by statement: executescript would COMMIT the journal's open transaction.
    for statement in TABLE.split(";"):
        if statement.strip():
            conn.execute(statement)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def rsync_secret(token: str) -> str:
    """The satellite's rsync password (derived: the satellite computes it from its token)."""
    return hmac.new(token.encode(), b"satellite-rsync", hashlib.sha256).hexdigest()[:40]


def rsync_user(name: str) -> str:
    return RSYNC_USER_PREFIX + name


def add_op(name: str, now: float) -> Any:
    """A new satellite; returns its token (shown once: only its hash is kept)."""

    def op(conn: sqlite3.Connection) -> str:
        satellite_name(name)  # InvalidName: the caller checked it; storage keeps the rsync user name safe too
        ensure_table(conn)
        if conn.execute("SELECT 1 FROM satellites WHERE name = ?", (name,)).fetchone():
            raise SatelliteExists(f"satellite {name} exists (remove it first to issue a new token)")
        if conn.execute("SELECT count(*) FROM satellites").fetchone()[0] >= MAX_SATELLITES:
            raise TooManySatellites(f"at most {MAX_SATELLITES} satellites")
        token = TOKEN_PREFIX + new_token()
        conn.execute("INSERT INTO satellites(name, token_hash, rsync_secret, created) VALUES (?,?,?,?)",
                     (name, token_hash(token), rsync_secret(token), now))
        return token

    return op


def remove_op(name: str) -> Any:
    def op(conn: sqlite3.Connection) -> bool:
        ensure_table(conn)
        return conn.execute("DELETE FROM satellites WHERE name = ?", (name,)).rowcount > 0

    return op


def authenticate(conn: sqlite3.Connection, token: str | None) -> str | None:
    """The satellite this bearer token belongs to, or None."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    try:
        row = conn.execute("SELECT name, token_hash FROM satellites WHERE token_hash = ?",
                           (token_hash(token),)).fetchone()
    except sqlite3.OperationalError:  # no table yet: no satellites
        return None
    if row is None or not hmac.compare_digest(row[1], token_hash(token)):
        return None
    return str(row[0])


def contact_op(name: str, now: float, address: str | None, versions: list[str] | None, backlog: int | None) -> Any:
    def op(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE satellites SET last_contact = ?, address = ?, versions = coalesce(?, versions), "
                     "backlog = coalesce(?, backlog) WHERE name = ?",
                     (now, address, json.dumps(versions[:1000]) if versions is not None else None, backlog, name))

    return op


MAX_EVENTS_PER_REPORT = 500


@dataclass(frozen=True, slots=True)
class Report:
    """One install report a satellite relayed, as checked by domain/satellites.reports_op."""

    id: int  # the satellite's sequence number
    host: str
    mac: str | None
    time: float
    stage: str
    detail: str | None


RecordOp = Callable[[str, str | None, float, str, str | None], Callable[[sqlite3.Connection], object]]


def apply_reports_op(name: str, reports: list[Report], record: RecordOp
                     ) -> Callable[[sqlite3.Connection], tuple[int, int, int]]:
    """Apply a satellite's buffered install reports in order, each once: ids at or below the last one
    applied are replays (the satellite did not hear our answer) and are skipped. Returns (applied, dropped,
    last id).

    A report for a host the primary does not know is dropped (counted, not an error: it may have been
    removed here while the satellite was away). `record` stores one report as the primary's own installer
    reports are stored (domain/install_events.record_op: a failure keeps its stage and reason)."""

    def op(conn: sqlite3.Connection) -> tuple[int, int, int]:
        row = conn.execute("SELECT delivered FROM satellites WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise SatelliteError(f"satellite {name} does not exist")
        last = int(row[0])
        applied = dropped = 0
        for r in sorted(reports, key=lambda r: r.id):
            if r.id <= last:
                continue
            last = r.id
            if not host_exists(conn, r.host):
                dropped += 1
                continue
            record(r.host, r.mac or "", r.time, r.stage, r.detail)(conn)
            applied += 1
        conn.execute("UPDATE satellites SET delivered = ? WHERE name = ?", (last, name))
        return applied, dropped, last

    return op


def list_satellites(conn: sqlite3.Connection) -> list[Satellite]:
    try:
        rows = conn.execute("SELECT name, created, last_contact, address, versions, backlog, delivered "
                            "FROM satellites ORDER BY name").fetchall()
    except sqlite3.OperationalError:  # no table yet: no satellites
        return []
    return [Satellite(r[0], r[1], r[2], r[3], tuple(json.loads(r[4]) if r[4] else ()), r[5], r[6]) for r in rows]


def rsync_credentials(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """(rsync user, password) of every satellite, for the satellite module."""
    try:
        rows = conn.execute("SELECT name, rsync_secret FROM satellites ORDER BY name").fetchall()
    except sqlite3.OperationalError:  # no table yet: no satellites
        return []
    return [(rsync_user(r[0]), r[1]) for r in rows]


def mirrored_hosts(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    """The hosts a satellite mirrors (GET /satellite/v1/config), by name, at most `limit`; each with the image
    and version it installs (its profile's where it has none: the satellite has no profiles)."""
    return [{"name": h.name, "mac": h.mac, "ip": str(h.ip) if h.ip is not None else None,
             "image": h.image, "version": h.version, "state": h.state, "updated": h.updated}
            for h in first_hosts(conn, limit, effective=True)]
