"""Write-back for the in-memory models: all their writes of one commit go to the journal as ONE operation.

Why: the journal runs operations on its writer thread, and every SQLite statement there gives up and
takes back the GIL. While the event loop is busy answering a DHCP storm, each take-back can wait a
whole switch interval, so one statement per lease per packet made commits slow enough to delay ACKs
by hundreds of milliseconds. Here changes queue in memory; the first one after a drain submits a
single journal operation that, on the writer thread, takes everything queued by then and writes it
with multi-row statements (a handful of statements per commit instead of several per lease).

Durability is unchanged: a change queued before `journal.flush()` is awaited is in the operation
that flush waits for (either the scheduled one, which has not taken the queue yet, or a new one).
Order is kept for everything except rows of kinds declared `commutes` (they touch only their own
table, e.g. machine sightings), which are written first.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from state.eventlog import EventLog
from state.journal import storage_failure

log = EventLog("imageserver.state")

Op = Callable[[sqlite3.Connection], Any]
CHUNK = 500  # rows per multi-row statement


@dataclass(frozen=True, slots=True)
class RowKind:
    """A kind of row written in bulk: `write(conn, rows)` writes consecutive rows with multi-row
    statements and must have the effect of writing them one by one in order (or raise
    sqlite3.IntegrityError, after which they are written one by one)."""

    name: str
    write: Callable[[sqlite3.Connection, list[tuple[Any, ...]]], None]
    commutes: bool = False
    # `write` is a single SQL statement: SQLite undoes a failed statement by itself, so it needs no
    # SAVEPOINT around it (each statement on the writer thread is a round trip for the GIL).
    one_statement: bool = False


class WriteBack:
    """Callable like a plain writer (`wb(op)` for an ordered operation) plus `wb.row(kind, row)`.

    `WriteBack(journal.submit)` in the daemon; `WriteBack(conn=conn)` writes at once on a plain
    connection (offline CLI: the caller holds the transaction, and errors propagate to it).
    """

    def __init__(self, submit: Callable[[Op], Any] | None = None, *, conn: sqlite3.Connection | None = None) -> None:
        if (submit is None) == (conn is None):
            raise ValueError("WriteBack needs either a journal's submit or a connection")
        self._submit = submit
        self._conn = conn
        self._lock = threading.Lock()  # the queue is swapped on the writer thread
        self._queue: list[tuple[RowKind | None, Any]] = []
        self._scheduled = False
        self.failures = 0

    def __call__(self, op: Op) -> None:
        self._add(None, op)

    def row(self, kind: RowKind, row: tuple[Any, ...]) -> None:
        self._add(kind, row)

    def _add(self, kind: RowKind | None, item: Any) -> None:
        if self._conn is not None:
            if kind is None:
                item(self._conn)
            else:
                kind.write(self._conn, [item])
            return
        assert self._submit is not None
        with self._lock:
            self._queue.append((kind, item))
            if self._scheduled:
                return
            self._scheduled = True
        fut = self._submit(self._drain)
        fut.add_done_callback(self._done)

    def _done(self, fut: Any) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            self.failures += 1
            log.error("state-write-failed", error=str(fut.exception()))

    # ---------------------------------------------------------------- on the writer thread

    def _drain(self, conn: sqlite3.Connection) -> int:
        with self._lock:
            queue, self._queue = self._queue, []
            self._scheduled = False
        apply(conn, queue, self)
        return len(queue)

    def _failed(self, what: str, error: Exception) -> None:
        self.failures += 1
        log.error("state-write-failed", what=what, error=str(error))


def apply(conn: sqlite3.Connection, queue: list[tuple[RowKind | None, Any]], wb: WriteBack | None = None) -> None:
    """Write a queue: commuting rows first (per kind), then the rest in order, consecutive rows of one
    kind as one bulk write. A failing bulk write falls back to row by row; a failing row or
    operation is logged and skipped (the model in memory stays the truth while the daemon runs)."""
    commuting: dict[RowKind, list[tuple[Any, ...]]] = {}
    ordered: list[tuple[RowKind | None, Any]] = []
    for kind, item in queue:
        if kind is not None and kind.commutes:
            commuting.setdefault(kind, []).append(item)
        else:
            ordered.append((kind, item))
    for kind, rows in commuting.items():
        _rows(conn, kind, rows, wb)
    run: list[tuple[Any, ...]] = []
    run_kind: RowKind | None = None
    for kind, item in ordered:
        if kind is not None and kind is run_kind:
            run.append(item)
            continue
        if run_kind is not None:
            _rows(conn, run_kind, run, wb)
        run, run_kind = [], None
        if kind is None:
            _guarded(conn, item, "operation", wb)
        else:
            run, run_kind = [item], kind
    if run_kind is not None:
        _rows(conn, run_kind, run, wb)


def _rows(conn: sqlite3.Connection, kind: RowKind, rows: list[tuple[Any, ...]], wb: WriteBack | None) -> None:
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start:start + CHUNK]
        if _guarded(conn, _writing(kind, chunk), kind.name, None, kind.one_statement):
            continue
        for row in chunk:  # exact one-by-one semantics; only the offending rows are lost
            _guarded(conn, _writing(kind, [row]), kind.name, wb, kind.one_statement)


def _writing(kind: RowKind, rows: list[tuple[Any, ...]]) -> Op:
    return lambda conn: kind.write(conn, rows)


def _guarded(conn: sqlite3.Connection, fn: Op, what: str, wb: WriteBack | None, one_statement: bool = False) -> bool:
    if one_statement and conn.in_transaction:
        try:
            fn(conn)
        except sqlite3.Error as e:
            if not conn.in_transaction or storage_failure(e):
                # SQLite rolled the whole transaction back, or only this statement but the disk is full or
                # failing: no row is to blame, and a batch committed without these rows would let the DHCP
                # server ACK leases that are not on disk. The commit fails.
                raise
            if wb is not None:
                wb._failed(what, e)
            return False
        return True
    conn.execute("SAVEPOINT wb")
    try:
        fn(conn)
    except sqlite3.Error as e:
        if storage_failure(e):  # as above: fail the batch, not the row
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK TO wb")
                conn.execute("RELEASE wb")
            raise
        conn.execute("ROLLBACK TO wb")
        conn.execute("RELEASE wb")
        if wb is not None:
            wb._failed(what, e)
        return False
    conn.execute("RELEASE wb")
    return True
