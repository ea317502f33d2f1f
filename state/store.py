"""The daemon's handle on the state database: one writer (group commit) and one reader connection."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from state.db import connect, db_path
from state.journal import Journal
from state.lease_rows import active_lease_count
from state.writeback import WriteBack


class Store:
    """Reads run on the event loop thread (WAL: readers never block the writer); writes go through the journal.

    A read sees what has been committed, so a handler that wrote something awaits the journal first.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = db_path(state_dir)
        self.reader = connect(self.path)  # creates and migrates the database before the writer starts
        self.journal = Journal(self.path)
        # The in-memory models' (leases, machines) shared write-back: all their rows of one commit are ONE
        # journal operation, so a DHCP batch commits without a SAVEPOINT per model (each statement on the
        # writer thread is a round trip for the GIL while the event loop is busy).
        self.writeback = WriteBack(self.journal.submit)

    def read(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return self.reader.execute(sql, params).fetchall()

    def read_one(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.reader.execute(sql, params).fetchone()
        return row

    def counts(self, now: float) -> dict[str, int]:
        """Rows per table for the status document; `active_leases` leaves out leases past their end."""
        out = {table: int(self.reader.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
               for table in ("leases", "reservations", "hosts", "machines", "images")}
        out["active_leases"] = active_lease_count(self.reader, now)
        return out

    async def close(self) -> None:
        await self.journal.close()
        self.reader.close()


def open_offline(state_dir: Path) -> sqlite3.Connection:
    """A plain connection for CLI commands run while the daemon is down (autocommit; wrap writes in BEGIN)."""
    return connect(db_path(state_dir))
