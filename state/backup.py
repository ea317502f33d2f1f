"""The database side of backup and restore: a consistent copy of the live store, and re-homing a restored one.

The daemon keeps the store in WAL mode and writes it all the time (every DHCP ACK), so the file cannot be
copied with cp. SQLite's online backup API copies the pages of one read transaction: a snapshot as of one
commit, taken while writers go on (in WAL mode a reader never blocks them). It is done in one step
(pages=-1) on purpose: a step-wise backup restarts whenever another process commits, which under DHCP
traffic could be forever.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from state.db import StoreError, schema_version
from state.images import list_versions
from state.permissions import private_database
from state.schema import MIGRATIONS

# The schema this imageserver writes; a backup from a newer one cannot be restored by it.
CURRENT_SCHEMA = len(MIGRATIONS)


@dataclass(frozen=True, slots=True)
class Snapshot:
    schema_version: int
    images: list[tuple[str, int, str]]  # (name, version, tree path as the source store recorded it)


def snapshot(source: Path, dest: Path) -> Snapshot:
    """Copy the database at `source` (possibly in use) to the new single file `dest` and check it."""
    if dest.exists():
        raise StoreError(f"{dest} exists already")
    try:
        # Not mode=ro: a read-only connection cannot open a WAL database whose -shm is missing (the daemon
        # stopped); this one only reads all the same.
        if not source.is_file():
            raise StoreError(f"no state database at {source}")
        src = sqlite3.connect(source, isolation_level=None, timeout=10)
    except sqlite3.Error as e:
        raise StoreError(f"cannot open state database {source}: {e}") from None
    try:
        src.execute("PRAGMA busy_timeout=10000")
        private_database(dest)
        dst = sqlite3.connect(dest, isolation_level=None)
        try:
            src.backup(dst, pages=-1)
            # One self-contained file in the backup (no -wal beside it); the daemon turns WAL on again.
            dst.execute("PRAGMA journal_mode=DELETE")
            problem = dst.execute("PRAGMA integrity_check").fetchone()[0]
            if problem != "ok":
                raise StoreError(f"the copy of {source} fails SQLite's integrity check: {problem}")
            version = schema_version(dst)
            images = [(iv.name, iv.version, iv.path) for iv in list_versions(dst)]
        finally:
            dst.close()
    except sqlite3.Error as e:
        raise StoreError(f"cannot copy the state database {source}: {e}") from None
    finally:
        src.close()
    return Snapshot(version, images)


def read_schema_version(path: Path) -> int:
    """The schema version of a database file (read-only)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        try:
            return schema_version(conn)
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise StoreError(f"cannot read the database {path}: {e}") from None


def rehome_images(path: Path, images_root: Path) -> int:
    """Point every registered version of the restored database at `path` to its tree under `images_root`
    (the store records absolute paths; a restore into another state dir moves them). Returns the count."""
    try:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            cur = conn.execute("UPDATE images SET path = ? || '/' || name || '/v' || version",
                               (str(images_root),))
            conn.execute("COMMIT")
            return int(cur.rowcount)
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise StoreError(f"cannot update image paths in {path}: {e}") from None
