"""Group commit: many writes, one COMMIT (one fsync) per batch, on one writer thread.

Callers queue operations (functions of a sqlite3 connection) with `submit`; everything queued while a
commit is in flight goes into the next batch. `await flush()` returns once everything queued before it
is durable, so the DHCP server can say "this lease is on disk" before it sends the ACK without paying
one fsync per ACK. Each operation runs in its own SAVEPOINT: one failing operation (a UNIQUE clash)
fails only its own future, not its batch-mates.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from state.db import connect
from state.eventlog import EventLog

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]

log = EventLog("imageserver.state")

# SQLite primary result codes that say the storage failed, not the operation: the disk is full or
# failing, the file is damaged or cannot be written. Such an error in any operation fails its batch.
_STORAGE_CODES = frozenset({7, 8, 10, 11, 13, 14, 26})  # NOMEM READONLY IOERR CORRUPT FULL CANTOPEN NOTADB


def storage_failure(error: BaseException) -> bool:
    """Is this SQLite error the storage's (disk full, I/O error, ...) rather than one operation's?"""
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(error, sqlite3.Error) and code is not None and (code & 0xFF) in _STORAGE_CODES


@dataclass(slots=True)
class _Batch:
    ops: list[tuple[Op, asyncio.Future[Any]]] = field(default_factory=list)
    done: asyncio.Future[None] | None = None


class Journal:
    """The single writer of the state database inside the daemon."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-writer")
        # The connection lives on the writer thread only (created there lazily).
        self._conn: sqlite3.Connection | None = None
        self._batch = _Batch()
        self._inflight: _Batch | None = None  # the batch being committed now
        self._flusher: asyncio.Task[None] | None = None
        self.commits = 0
        self.ops_committed = 0
        self.last_error: str | None = None
        self.failing = False  # the last commit failed (disk full, I/O error); cleared by the next success

    # -- queueing ---------------------------------------------------------------------------------

    def submit(self, op: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue one operation for the next batch; its future resolves once the batch has committed."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._batch.ops.append((op, fut))
        self._kick(loop)
        return fut

    async def run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Queue an operation and wait until it is durable; returns its result."""
        return await self.submit(op)

    async def flush(self) -> None:
        """Wait until everything queued so far is committed (raises if that commit failed)."""
        batch = self._batch
        if not batch.ops:
            # Nothing queued since the last batch started; wait for the in-flight one, if any — not for
            # the flusher task, which keeps committing later batches as long as writes keep coming.
            inflight = self._inflight
            if inflight is not None and inflight.done is not None and not inflight.done.done():
                await asyncio.shield(inflight.done)
            return
        loop = asyncio.get_running_loop()
        if batch.done is None:
            batch.done = loop.create_future()
        self._kick(loop)
        await asyncio.shield(batch.done)

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        # Yield once so every write queued in this loop turn joins the batch.
        await asyncio.sleep(0)
        while self._batch.ops:
            batch, self._batch = self._batch, _Batch()
            if batch.done is None:
                batch.done = loop.create_future()
            self._inflight = batch
            try:
                results = await loop.run_in_executor(self._executor, self._commit, [op for op, _ in batch.ops])
            except Exception as e:  # the COMMIT itself failed (disk full, I/O error): nothing in the batch holds
                self.last_error = f"{type(e).__name__}: {e}"
                self.failing = True
                log.error("commit-failed", error=str(e), ops=len(batch.ops))
                for _, fut in batch.ops:
                    if not fut.done():
                        fut.set_exception(e)
                if batch.done is not None and not batch.done.done():
                    batch.done.set_exception(e)
                    batch.done.exception()  # mark retrieved: a flush() waiter may have gone away
                continue
            if self.failing:
                self.failing = False
                log.info("commit-recovered", commits=self.commits)
            for (_, fut), (ok, value) in zip(batch.ops, results, strict=True):
                if fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
            if batch.done is not None and not batch.done.done():
                batch.done.set_result(None)

    # -- on the writer thread ---------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect(self.path, check_same_thread=False)
        return self._conn

    def _commit(self, ops: list[Op]) -> list[tuple[bool, Any]]:
        conn = self._connection()
        results: list[tuple[bool, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            if len(ops) == 1:
                # The usual batch, one write-back drain: no SAVEPOINT needed to isolate it, which spares
                # two statements (two GIL round trips while the event loop is busy) per commit.
                result = self._run_alone(conn, ops[0])
                results.append(result)
                if result[0]:  # (a failed one was rolled back already)
                    conn.execute("COMMIT")
                self.commits += 1
                self.ops_committed += 1
                return results
            for op in ops:
                conn.execute("SAVEPOINT op")
                try:
                    results.append((True, op(conn)))
                    conn.execute("RELEASE op")
                except sqlite3.IntegrityError as e:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results.append((False, e))
                except Exception as e:  # an operation's own bug must not poison the batch
                    if storage_failure(e):
                        # ... but a full or failing disk is no operation's fault: nothing in this batch may
                        # count as durable (flush() must not let the DHCP server ACK a lease it lost).
                        raise
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results.append((False, e))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.commits += 1
        self.ops_committed += len(ops)
        return results

    @staticmethod
    def _run_alone(conn: sqlite3.Connection, op: Op) -> tuple[bool, Any]:
        """One operation in its own transaction: on failure, rolling back the transaction undoes just it."""
        try:
            return True, op(conn)
        except Exception as e:  # as with a SAVEPOINT: the operation fails, the commit does not
            if not conn.in_transaction or storage_failure(e):
                # SQLite already ended the transaction, or the disk is full or failing: the commit fails
                # (the caller rolls back), so flush() raises and no ACK waits on a lease that is not on disk.
                raise
            conn.execute("ROLLBACK")
            return False, e

    async def close(self) -> None:
        """Commit what is queued, then close the connection on its own thread."""
        try:
            await self.flush()
        finally:
            if self._flusher is not None:
                await asyncio.gather(self._flusher, return_exceptions=True)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._close_conn)
            self._executor.shutdown(wait=True)

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
