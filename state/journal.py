"""Group commit: many writes, one COMMIT (one fsync) per batch, on one writer thread.

Callers queue operations (functions of a sqlite3 connection) with `submit`; everything queued in one
event-loop turn, and everything queued while a commit is in flight, goes into the next batch.
`when_durable(callback)` calls back (on the loop) once everything queued before it is durable, and
`await flush()` is the same as a coroutine, so the DHCP server can say "this lease is on disk" before it
sends the ACK without paying one fsync per ACK. Each operation runs in its own SAVEPOINT: one failing
operation (a UNIQUE clash) fails only its own future, not its batch-mates.

The writer is a dedicated thread that takes the next batch itself as soon as a commit ends and hands
each finished batch back with one `call_soon_threadsafe`: a commit's result reaches its waiters in one
loop turn, not the three or four (executor future, flusher task, shielded future, waiting task) a
thread-pool hop costs, and each of which waits behind a whole turn of packets on a busy DHCP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from state.db import connect
from state.eventlog import EventLog

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]
Waiter = Callable[[BaseException | None], None]  # called with None once durable, else the commit's error

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
    loop: asyncio.AbstractEventLoop
    ops: list[tuple[Op, asyncio.Future[Any]]] = field(default_factory=list)
    # Loop-thread only: called once the batch has committed (or failed).
    waiters: list[Waiter] = field(default_factory=list)


class Journal:
    """The single writer of the state database inside the daemon."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._open: _Batch | None = None  # being filled on the loop
        self._released = False  # the open batch's loop turn has ended: the writer may take it
        # Taken by the writer and not yet handed back on the loop, oldest first (at most two: one
        # committing, one whose result is on its way to the loop).
        self._unfinished: list[_Batch] = []
        self._thread: threading.Thread | None = None
        self._closing = False
        # The connection lives on the writer thread only (created there lazily).
        self._conn: sqlite3.Connection | None = None
        self.commits = 0
        self.ops_committed = 0
        self.last_error: str | None = None
        self.failing = False  # the last commit failed (disk full, I/O error); cleared by the next success

    # -- queueing (on the loop) -------------------------------------------------------------------

    def submit(self, op: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue one operation for the next batch; its future resolves once the batch has committed."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        with self._lock:
            batch = self._open
            first = batch is None
            if batch is None:
                batch = self._open = _Batch(loop)
            batch.ops.append((op, fut))
        if first:
            self._start()
            # Released at the end of this loop turn, so every write queued in the turn joins the batch.
            loop.call_soon(self._release)
        return fut

    async def run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Queue an operation and wait until it is durable; returns its result."""
        return await self.submit(op)

    def when_durable(self, waiter: Waiter) -> None:
        """Call `waiter(None)` on the loop once everything queued so far is committed, or `waiter(error)`
        if that commit failed. With nothing queued or in flight, it is called in the next loop turn."""
        with self._lock:
            batch = self._open if self._open is not None else (self._unfinished[-1] if self._unfinished else None)
        if batch is not None:
            batch.waiters.append(waiter)  # waiters are touched on the loop thread only
        else:
            asyncio.get_running_loop().call_soon(waiter, None)

    async def flush(self) -> None:
        """Wait until everything queued so far is committed (raises if that commit failed)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def done(error: BaseException | None) -> None:
            if fut.done():
                return  # the flush was cancelled
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)

        self.when_durable(done)
        await fut

    def _release(self) -> None:
        with self._lock:
            if self._open is not None:
                self._released = True
                self._work.notify()

    def _start(self) -> None:
        if self._thread is None:
            # A daemon thread: an interpreter exiting without close() is not held up by it (whatever was
            # not committed was not acknowledged either).
            self._thread = threading.Thread(target=self._writer, name="state-writer", daemon=True)
            self._thread.start()

    def _finished(self, batch: _Batch, results: list[tuple[bool, Any]] | None, error: BaseException | None) -> None:
        """On the loop: resolve a batch's futures and call its waiters."""
        with self._lock:
            self._unfinished.remove(batch)
        if error is not None:  # the COMMIT itself failed (disk full, I/O error): nothing in the batch holds
            self.last_error = f"{type(error).__name__}: {error}"
            self.failing = True
            log.error("commit-failed", error=str(error), ops=len(batch.ops))
            for _, fut in batch.ops:
                if not fut.done():
                    fut.set_exception(error)
        else:
            if self.failing:
                self.failing = False
                log.info("commit-recovered", commits=self.commits)
            assert results is not None
            for (_, fut), (ok, value) in zip(batch.ops, results, strict=True):
                if fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
        for waiter in batch.waiters:
            try:
                waiter(error)
            except Exception:  # one waiter's bug must not keep the others waiting
                log.exception("durable-callback-failed")

    # -- on the writer thread ---------------------------------------------------------------------

    def _writer(self) -> None:
        while True:
            with self._work:
                while not (self._released and self._open is not None) and not self._closing:
                    self._work.wait()
                batch = self._open
                if not self._released or batch is None:
                    break  # closing, nothing released left
                self._open, self._released = None, False
                self._unfinished.append(batch)
            results: list[tuple[bool, Any]] | None = None
            error: BaseException | None = None
            try:
                results = self._commit([op for op, _ in batch.ops])
            except Exception as e:
                error = e
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                batch.loop.call_soon_threadsafe(self._finished, batch, results, error)
        self._close_conn()

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
        """Commit what is queued, then stop the writer (which closes the connection on its own thread)."""
        try:
            await self.flush()
        finally:
            with self._lock:
                self._closing = True
                self._work.notify()
            if self._thread is not None:
                await asyncio.to_thread(self._thread.join)

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
