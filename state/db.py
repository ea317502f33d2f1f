"""Opening the SQLite store: WAL, full durability, migrations.

`synchronous=FULL` in WAL mode means a COMMIT returns only after the WAL is fsync'd, which is
what "the lease is on disk before the ACK is sent" needs. The group committer batches many
writes into one such COMMIT.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from state.permissions import private_database
from state.schema import MIGRATIONS, VIEWS

DB_NAME = "imageserver.db"


class StoreError(RuntimeError):
    """The store cannot be opened or migrated; the message says why and where."""


# The names the floors above use for the store's connection and its failures: domain/ and services/ import
# no sqlite3 (an import-linter contract), which database sits under state/ is state/'s business.
Connection = sqlite3.Connection
StoreFailure = sqlite3.Error  # locked, I/O error, disk full: the store cannot answer or take a change now


def db_path(state_dir: Path) -> Path:
    return state_dir / DB_NAME


def connect(path: Path, *, readonly: bool = False, check_same_thread: bool = True) -> sqlite3.Connection:
    """Open (and migrate, unless read-only) the database at `path`."""
    try:
        if readonly:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=check_same_thread,
                                   isolation_level=None, timeout=10)
        else:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            private_database(path)
            conn = sqlite3.connect(path, check_same_thread=check_same_thread, isolation_level=None, timeout=10)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=10000")
        if not readonly:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            migrate(conn)
        return conn
    except OSError as e:
        raise StoreError(f"cannot open state database {path}: {e.strerror}") from None
    except sqlite3.Error as e:
        raise StoreError(f"cannot open state database {path}: {e}") from None


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date, one migration per transaction; returns the resulting version."""
    current = schema_version(conn)
    if current > len(MIGRATIONS):
        raise StoreError(f"the database has schema version {current}, newer than this imageserver "
                         f"knows ({len(MIGRATIONS)}); refusing to touch it")
    for version in range(current + 1, len(MIGRATIONS) + 1):
        conn.execute("BEGIN IMMEDIATE")
        for statement in _split(MIGRATIONS[version - 1]):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={version}")
        conn.execute("COMMIT")
    _keep_views(conn)
    return len(MIGRATIONS)


def _keep_views(conn: sqlite3.Connection) -> None:
    """Make each stored view the one state.schema.VIEWS declares (a view holds no data: replacing it loses
    nothing); nothing is written when they are equal already."""
    def stored(name: str) -> str | None:
        row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = ?", (name,)).fetchone()
        return str(row[0]) if row is not None else None

    for name, sql in VIEWS.items():
        if stored(name) == sql:
            continue
        with transaction(conn):
            if stored(name) != sql:  # another process may have replaced it meanwhile
                conn.execute(f"DROP VIEW IF EXISTS {name}")
                conn.execute(sql)


def _split(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit on its own, outside our transaction)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        stripped = line.split("--", 1)[0]
        buf += stripped
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT on an autocommit connection; ROLLBACK on any exception (if still open)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
