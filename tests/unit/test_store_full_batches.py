"""A storage failure inside a batch (SQLITE_FULL at a statement, not only at COMMIT) fails the whole batch.

Row-level conflicts cost only their row, but "the disk is full" is no row's fault: if the write-back
skipped such a row and the batch committed without it, `flush()` would report the lease durable and the
DHCP server would send an ACK for a lease that is not on disk. SQLite's own limit `max_page_count`
makes a real SQLITE_FULL at the statement that needs a new page (SQLite then ends the whole
transaction); SQLite may also end only the statement, which the last two tests build by hand.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from state.journal import Journal, storage_failure
from state.lease_rows import LEASE_ROWS
from state.writeback import RowKind, WriteBack
from tests.unit.test_writeback import lease_row


def cap_pages(conn: sqlite3.Connection) -> None:
    """No page beyond what the database has now: the next write that needs a new page hits SQLITE_FULL."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")


def fill_rows(conn: sqlite3.Connection) -> None:
    conn.executemany("INSERT INTO machines(mac, first_seen, last_seen, hostname) VALUES (?,?,?,?)",
                     ((f"02:00:00:{i >> 8:02x}:{i & 255:02x}:00", 1.0, 1.0, "x" * 200) for i in range(2000)))


async def test_a_lease_row_that_hits_a_full_disk_fails_the_flush_not_just_itself(tmp_path: Path) -> None:
    j = Journal(tmp_path / "s.db")
    await j.run(cap_pages)
    wb = WriteBack(j.submit)
    for i in range(300):  # more rows than the pages left can take
        wb.row(LEASE_ROWS, lease_row(f"02:aa:00:00:{i >> 8:02x}:{i & 255:02x}", 1000 + i))
    with pytest.raises(sqlite3.OperationalError) as e:
        await j.flush()
    assert storage_failure(e.value)
    assert j.failing
    await j.close()


async def test_a_full_disk_in_one_operation_fails_its_whole_batch(tmp_path: Path) -> None:
    j = Journal(tmp_path / "s.db")
    await j.run(cap_pages)
    small = j.submit(lambda c: c.execute("UPDATE leases SET expires = 1 WHERE mac = 'nobody'"))
    big = j.submit(fill_rows)
    with pytest.raises(sqlite3.OperationalError):
        await j.flush()
    for fut in (small, big):
        with pytest.raises(sqlite3.OperationalError):
            fut.result()
    await j.close()


def test_programming_errors_and_conflicts_are_not_storage_failures(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db")
    conn.execute("CREATE TABLE t (a UNIQUE)")
    conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError) as clash:
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.OperationalError) as typo:
        conn.execute("INSERT INTO no_such_table VALUES (1)")
    assert not storage_failure(clash.value) and not storage_failure(typo.value)


def statement_full() -> sqlite3.OperationalError:
    """SQLITE_FULL as SQLite raises it when it rolls back only the statement (it may, per its docs; the
    max_page_count route above happens to end the whole transaction, so the case is built here)."""
    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorcode = 13  # type: ignore[attr-defined]
    error.sqlite_errorname = "SQLITE_FULL"  # type: ignore[attr-defined]
    return error


async def test_a_full_disk_that_ends_only_the_statement_still_fails_the_flush(tmp_path: Path) -> None:
    j = Journal(tmp_path / "s.db")

    def write_then_full(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO leases(mac, ip, subnet, starts, expires) VALUES ('02:00:00:00:00:01', 1, 'x', 0, 1)")
        raise statement_full()

    lost = j.submit(write_then_full)
    with pytest.raises(sqlite3.OperationalError):
        await j.flush()
    with pytest.raises(sqlite3.OperationalError):
        lost.result()
    assert j.failing
    await j.close()


async def test_a_lease_row_the_write_back_could_not_write_for_a_full_disk_fails_the_flush(tmp_path: Path) -> None:
    j = Journal(tmp_path / "s.db")
    wb = WriteBack(j.submit)

    def full_kind(conn: sqlite3.Connection, rows: list[tuple]) -> None:
        raise statement_full()

    wb.row(RowKind("leases", full_kind), lease_row("02:aa:00:00:00:01", 1000))
    with pytest.raises(sqlite3.OperationalError):
        await j.flush()
    await j.close()
