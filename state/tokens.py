"""The named API tokens' table (api_tokens): storage only. The use cases and their rules (names, roles, how
many, minting by state.credentials.new_token, 256 random bits) are domain/tokens.py.

A token is printed once; the table keeps its SHA-256 only. A slow hash (scrypt, bcrypt) protects passwords
people choose, which are guessable; a token of 256 random bits cannot be guessed from its hash, so one
SHA-256 is enough and keeps a request's check to a hash and one indexed lookup (no per-request key
stretching on the 2-core appliance). Authentication reads the table on every request, so a revoked token
is refused at once (also when the offline CLI revoked it: the daemon's reader sees the commit).

The admin token file (<state_dir>/admin.token) is the admin named ADMIN_NAME; no row may take that name.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

ROLES = ("reader", "operator", "admin")  # the values a row's role may take (domain/tokens.allows ranks them)
ADMIN_NAME = "admin"  # the name <state_dir>/admin.token goes by
TOKEN_PREFIX = "ist-"  # tells an imageserver API token apart from a satellite's ("sat-") or an install token

TABLE = """
CREATE TABLE IF NOT EXISTS api_tokens (
    name        TEXT PRIMARY KEY,
    role        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created     REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A named token as listed: never its secret."""

    name: str
    role: str
    created: float | None  # None: the admin token file (its age is the file's)


def ensure_table(conn: sqlite3.Connection) -> None:
    """Create the table if missing (kept out of state/schema.py's numbered migrations, as satellites are)."""
    conn.execute(TABLE)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def exists(conn: sqlite3.Connection, name: str) -> bool:
    ensure_table(conn)
    return conn.execute("SELECT 1 FROM api_tokens WHERE name = ?", (name,)).fetchone() is not None


def count(conn: sqlite3.Connection) -> int:
    ensure_table(conn)
    return int(conn.execute("SELECT count(*) FROM api_tokens").fetchone()[0])


def insert(conn: sqlite3.Connection, name: str, role: str, token: str, now: float) -> None:
    """Store a token minted by domain/tokens.add_op: its hash only. The name's uniqueness is the table's."""
    ensure_table(conn)
    conn.execute("INSERT INTO api_tokens(name, role, token_hash, created) VALUES (?,?,?,?)",
                 (name, role, token_hash(token), now))


def revoke_op(name: str) -> Callable[[sqlite3.Connection], bool]:
    """Delete the named token; False if there was none."""

    def op(conn: sqlite3.Connection) -> bool:
        ensure_table(conn)
        return conn.execute("DELETE FROM api_tokens WHERE name = ?", (name,)).rowcount > 0

    return op


def list_tokens(conn: sqlite3.Connection) -> list[ApiToken]:
    """The named tokens, by name (the admin token file is not a row: callers add it)."""
    try:
        rows = conn.execute("SELECT name, role, created FROM api_tokens ORDER BY name").fetchall()
    except sqlite3.OperationalError:  # no table yet: no token was ever added
        return []
    return [ApiToken(str(r[0]), str(r[1]), float(r[2])) for r in rows]


def authenticate(conn: sqlite3.Connection, given: str | None) -> ApiToken | None:
    """The named token `given` is, or None. Looked up by its hash: what leaks through timing is a prefix of a
    SHA-256 of the guess, which says nothing about a real token."""
    if not given or not given.startswith(TOKEN_PREFIX):
        return None
    try:
        row = conn.execute("SELECT name, role, created FROM api_tokens WHERE token_hash = ?",
                           (token_hash(given),)).fetchone()
    except sqlite3.OperationalError:
        return None
    if row is None or row[1] not in ROLES:
        return None
    return ApiToken(str(row[0]), str(row[1]), float(row[2]))
