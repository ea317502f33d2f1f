"""Write-back: a turn's model changes reach SQLite as one journal operation, with one-by-one semantics."""

from __future__ import annotations

import sqlite3
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from state.db import connect
from state.journal import Journal
from state.lease_pools import PoolSpec
from state.lease_rows import LEASE_ROWS
from state.leases import LeaseModel
from state.sightings import MachineLog
from state.writeback import WriteBack, apply

POOL = PoolSpec(IPv4Network("10.40.0.0/16"), IPv4Address("10.40.0.10"), IPv4Address("10.40.255.250"), 600)
T0 = 5_000_000.0


def lease_row(mac: str, ip: int, expires: float = T0 + 600) -> tuple:
    return (mac, ip, str(POOL.network), T0, expires, None, None)


def rows(conn: sqlite3.Connection) -> list[tuple]:
    return [tuple(r) for r in conn.execute("SELECT mac, ip FROM leases ORDER BY mac")]


async def test_a_storm_turn_is_one_journal_operation_and_one_commit(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    conn = connect(db)
    journal = Journal(db)
    wb = WriteBack(journal.submit)
    leases = LeaseModel.load(conn, [POOL], wb, now=T0)
    machines = MachineLog.load(conn, wb)
    bound = {}
    for i in range(1200):  # more than one bulk chunk
        mac = f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}"
        machines.seen(mac, T0, arch=7)
        ip = leases.offer(mac, POOL, None, T0)
        bound[mac] = int(leases.commit(mac, ip, POOL, T0, None, None).ip)
    await journal.flush()
    assert (journal.commits, journal.ops_committed) == (1, 1)
    await journal.close()
    assert dict(rows(conn)) == bound
    assert conn.execute("SELECT count(*) FROM machines WHERE arch = 7").fetchone()[0] == 1200
    assert wb.failures == 0


async def test_changes_queued_while_a_commit_runs_go_into_the_next_one(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    conn = connect(db)
    journal = Journal(db)
    leases = LeaseModel.load(conn, [POOL], WriteBack(journal.submit), now=T0)
    first = leases.commit("02:00:00:00:00:01", leases.offer("02:00:00:00:00:01", POOL, None, T0), POOL, T0, None, None)
    flushing = journal.flush()
    second = leases.commit("02:00:00:00:00:02", leases.offer("02:00:00:00:00:02", POOL, None, T0), POOL, T0, None, None)
    await flushing
    await journal.flush()
    await journal.close()
    assert rows(conn) == [("02:00:00:00:00:01", int(first.ip)), ("02:00:00:00:00:02", int(second.ip))]


def test_a_bulk_run_has_the_effect_of_writing_row_by_row(tmp_path: Path) -> None:
    conn = connect(tmp_path / "s.db")
    conn.execute("INSERT INTO leases(mac, ip, subnet, starts, expires) VALUES ('m', 1, 'n', 0, 1), ('p', 2, 'n', 0, 1)")
    # m moves from 1 to 3, n takes 1, p's expired address 2 goes to q: one run, in this order.
    apply(conn, [(LEASE_ROWS, lease_row("m", 3)), (LEASE_ROWS, lease_row("n", 1)), (LEASE_ROWS, lease_row("q", 2))])
    assert rows(conn) == [("m", 3), ("n", 1), ("q", 2)]


def test_a_run_the_bulk_statement_cannot_express_is_redone_row_by_row(tmp_path: Path) -> None:
    conn = connect(tmp_path / "s.db")
    wb = WriteBack(conn=conn)
    # Within one run, address 7 goes to a and then to b: the bulk INSERT would clash on UNIQUE(ip).
    apply(conn, [(LEASE_ROWS, lease_row("a", 7)), (LEASE_ROWS, lease_row("b", 7))], wb)
    assert rows(conn) == [("b", 7)]
    assert wb.failures == 0


def test_a_failing_operation_costs_only_itself(tmp_path: Path) -> None:
    conn = connect(tmp_path / "s.db")
    wb = WriteBack(conn=conn)

    def broken(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO no_such_table VALUES (1)")

    apply(conn, [(LEASE_ROWS, lease_row("a", 1)), (None, broken), (LEASE_ROWS, lease_row("b", 2))], wb)
    assert rows(conn) == [("a", 1), ("b", 2)]
    assert wb.failures == 1


async def test_flush_under_a_steady_stream_of_writes_waits_for_its_own_commit_only(tmp_path: Path) -> None:
    # A DHCP storm never lets the journal go idle; an ACK must not wait for the storm to end.
    import asyncio

    db = tmp_path / "s.db"
    connect(db).close()
    journal = Journal(db)
    stop = asyncio.Event()

    async def storm() -> None:
        i = 0
        while not stop.is_set():
            for _ in range(20):  # about 20,000 writes a second, as a loaded server produces them
                journal.submit(lambda c, i=i: c.execute("INSERT INTO machines(mac, first_seen, last_seen) "
                                                        "VALUES (?,0,0)", (f"m{i}",)))
                i += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(storm())
    await asyncio.sleep(0.05)
    for _ in range(5):
        before = journal.commits
        await journal.flush()
        assert journal.commits - before <= 2  # the in-flight commit and the one holding our writes
    stop.set()
    await task
    await journal.close()
