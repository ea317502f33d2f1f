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


def test_migrations_bring_a_new_database_to_the_latest_version(tmp_path: Path) -> None:
    conn = connect(tmp_path / "s.db")
    assert schema_version(conn) == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
