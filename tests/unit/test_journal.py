"""Group commit: writes queued in one loop turn share one COMMIT; failures stay with their own operation."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from state.db import connect, schema_version
from state.journal import Journal
from state.schema import MIGRATIONS


def _insert(mac: str, ip: int):
    def op(conn: sqlite3.Connection) -> int:
        conn.execute(
            "INSERT INTO leases(mac, ip, subnet, starts, expires) VALUES (?,?,?,?,?)",
            (mac, ip, "10.0.0.0/24", 0.0, 100.0),
        )
        return ip

    return op


async def test_many_writes_in_one_turn_share_one_commit(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    connect(db).close()
    j = Journal(db)
    futures = [j.submit(_insert(f"02:00:00:00:00:{i:02x}", 100 + i)) for i in range(200)]
    await j.flush()
    assert [f.result() for f in futures] == [100 + i for i in range(200)]
    assert j.commits == 1
    await j.close()
    rows = connect(db).execute("SELECT count(*) FROM leases").fetchone()[0]
    assert rows == 200


async def test_writes_during_a_commit_go_into_the_next_batch(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    j = Journal(db)
    first = j.submit(_insert("02:00:00:00:00:01", 1))
    await asyncio.sleep(0)  # the flusher has taken batch 1
    second = j.submit(_insert("02:00:00:00:00:02", 2))
    await asyncio.gather(first, second)
    assert 1 <= j.commits <= 2
    await j.close()


async def test_one_failing_operation_does_not_fail_its_batch(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    j = Journal(db)
    ok = j.submit(_insert("02:00:00:00:00:01", 7))
    clash = j.submit(_insert("02:00:00:00:00:02", 7))  # same ip: UNIQUE violation
    ok2 = j.submit(_insert("02:00:00:00:00:03", 8))
    await j.flush()
    assert ok.result() == 7 and ok2.result() == 8
    with pytest.raises(sqlite3.IntegrityError):
        clash.result()
    await j.close()
    macs = [r[0] for r in connect(db).execute("SELECT mac FROM leases ORDER BY mac")]
    assert macs == ["02:00:00:00:00:01", "02:00:00:00:00:03"]


async def test_when_durable_calls_back_once_the_batch_holding_earlier_writes_is_on_disk(tmp_path: Path) -> None:
    # The DHCP server's ACK path: a callback, not a task or future per ACK, fired after the COMMIT.
    db = tmp_path / "s.db"
    connect(db).close()
    j = Journal(db)
    seen: list[tuple[BaseException | None, int]] = []

    def count() -> int:
        return int(connect(db, readonly=True).execute("SELECT count(*) FROM leases").fetchone()[0])

    j.submit(_insert("02:00:00:00:00:01", 1))
    j.when_durable(lambda error: seen.append((error, count())))
    await asyncio.sleep(0)  # released at the end of the turn: the writer takes the batch
    j.submit(_insert("02:00:00:00:00:02", 2))  # the next batch
    j.when_durable(lambda error: seen.append((error, count())))
    await j.flush()
    # Each callback saw its own write on disk (the second write joins the first batch if the writer had
    # not taken it yet, and then both see two rows).
    assert seen in ([(None, 1), (None, 2)], [(None, 2), (None, 2)])
    nothing: list[BaseException | None] = []
    j.when_durable(nothing.append)  # nothing queued or in flight: called back in the next turn
    await asyncio.sleep(0)
    assert nothing == [None]
    await j.close()


async def test_when_durable_while_a_batch_is_in_flight_waits_for_that_batch(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    connect(db).close()
    j = Journal(db)
    fut = j.submit(_insert("02:00:00:00:00:01", 1))
    await asyncio.sleep(0)  # taken by the writer; nothing open now
    seen: list[bool] = []
    j.when_durable(lambda error: seen.append(error is None and fut.done()))
    await fut
    await asyncio.sleep(0)
    assert seen == [True]
    await j.close()


async def test_a_failed_commit_reaches_its_waiters_as_the_error(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    connect(db).close()
    j = Journal(db)
    await j.run(lambda conn: conn.execute("PRAGMA query_only = ON"))  # every later write fails (READONLY)
    j.submit(_insert("02:00:00:00:00:01", 1))
    errors: list[BaseException | None] = []
    j.when_durable(errors.append)
    with pytest.raises(sqlite3.Error):
        await j.flush()
    assert len(errors) == 1 and isinstance(errors[0], sqlite3.Error)
    await j.close()


def test_migrations_bring_a_new_database_to_the_latest_version(tmp_path: Path) -> None:
    conn = connect(tmp_path / "s.db")
    assert schema_version(conn) == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
