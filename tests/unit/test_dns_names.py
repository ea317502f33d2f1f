"""state.names: the names DNS serves come from hosts, reservations and leases, and follow every commit."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from state.db import connect, db_path
from state.names import NameIndex
from state.store import Store


def ip(text: str) -> int:
    return int(IPv4Address(text))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path)
    yield s
    await s.close()


async def write(store: Store, sql: str, params: tuple[object, ...] = ()) -> None:
    def op(conn: sqlite3.Connection) -> None:
        conn.execute(sql, params)

    await store.journal.run(op)


def names(index: NameIndex, now: float = 1000.0) -> list[tuple[str, str, str]]:
    return [(e.name, str(e.address), e.source) for e in index.snapshot(now).entries]


async def test_sources_come_in_priority_order(store: Store) -> None:
    await write(store, "INSERT INTO hosts(name, ip, created, updated) VALUES('www2', ?, 0, 0)", (ip("10.0.0.12"),))
    await write(store, "INSERT INTO hosts(name, created, updated) VALUES('noaddr', 0, 0)")
    await write(store, "INSERT INTO reservations(mac, ip, hostname, created) VALUES('02:00:00:00:00:01', ?, 'res1', 0)",
                (ip("10.0.0.20"),))
    await write(store, "INSERT INTO reservations(mac, ip, created) VALUES('02:00:00:00:00:02', ?, 0)",
                (ip("10.0.0.21"),))
    await write(store, "INSERT INTO leases(mac, ip, subnet, starts, expires, hostname) "
                       "VALUES('02:00:00:00:00:03', ?, 'n', 900, 2000, 'dyn1')", (ip("10.0.0.100"),))
    assert names(NameIndex(store.reader)) == [
        ("www2", "10.0.0.12", "host"),
        ("res1", "10.0.0.20", "reservation"),
        ("dyn1", "10.0.0.100", "lease"),
    ]


async def test_a_commit_from_the_writer_is_seen_on_the_next_snapshot(store: Store) -> None:
    index = NameIndex(store.reader)
    first = index.snapshot(1000.0)
    assert index.snapshot(1000.0) is first and index.rebuilds == 1  # nothing changed: no rebuild
    await write(store, "INSERT INTO hosts(name, ip, created, updated) VALUES('new', ?, 0, 0)", (ip("10.0.0.5"),))
    second = index.snapshot(1000.0)
    assert second is not first and ("new", "10.0.0.5", "host") in names(index)
    assert second.serial > first.serial


async def test_a_commit_that_changes_no_name_keeps_the_serial(store: Store) -> None:
    index = NameIndex(store.reader)
    first = index.snapshot(1000.0)
    await write(store, "INSERT INTO leases(mac, ip, subnet, starts, expires) "
                       "VALUES('02:00:00:00:00:09', ?, 'n', 0, 5000)", (ip("10.0.0.99"),))
    second = index.snapshot(1000.0)
    assert index.rebuilds == 2 and second.serial == first.serial and second.entries == first.entries


async def test_a_commit_from_another_process_connection_is_seen_too(store: Store) -> None:
    index = NameIndex(store.reader)
    index.snapshot(1000.0)
    offline = connect(db_path(store.state_dir))  # what a CLI command run beside the daemon uses
    offline.execute("INSERT INTO hosts(name, ip, created, updated) VALUES('cli', ?, 0, 0)", (ip("10.0.0.6"),))
    offline.close()
    assert ("cli", "10.0.0.6", "host") in names(index)


async def test_expired_leases_leave_without_any_commit(store: Store) -> None:
    await write(store, "INSERT INTO leases(mac, ip, subnet, starts, expires, hostname) "
                       "VALUES('02:00:00:00:00:03', ?, 'n', 900, 1500, 'dyn1')", (ip("10.0.0.100"),))
    index = NameIndex(store.reader)
    assert names(index, now=1000.0) == [("dyn1", "10.0.0.100", "lease")]
    assert index.snapshot(1499.0).valid_until == 1500.0
    assert names(index, now=1500.0) == []


async def test_lease_hostnames_with_dots_are_ignored_and_the_first_lease_keeps_a_name(store: Store) -> None:
    for mac, addr, starts, host in (("02:00:00:00:00:01", "10.0.0.101", 900, "www.evil.example"),
                                    ("02:00:00:00:00:02", "10.0.0.102", 950, "same"),
                                    ("02:00:00:00:00:03", "10.0.0.103", 990, "same")):
        await write(store, "INSERT INTO leases(mac, ip, subnet, starts, expires, hostname) "
                           "VALUES(?, ?, 'n', ?, 5000, ?)", (mac, ip(addr), starts, host))
    index = NameIndex(store.reader)
    assert names(index) == [("same", "10.0.0.102", "lease")]
    assert {(r.name, r.mac, r.reason) for r in index.snapshot(1000.0).refused} == {
        ("www.evil.example", "02:00:00:00:00:01", "invalid"), ("same", "02:00:00:00:00:03", "taken")}


async def lease(store: Store, mac: str, addr: str, hostname: str | None, starts: float = 900) -> None:
    await write(store, "INSERT OR REPLACE INTO leases(mac, ip, subnet, starts, expires, hostname) "
                       "VALUES(?, ?, 'n', ?, 5000, ?)", (mac, ip(addr), starts, hostname))


async def test_a_hosts_name_answers_only_for_its_own_mac(store: Store) -> None:
    # node1 is a host without a fixed address: its name follows its own MAC's lease, never another's.
    await write(store, "INSERT INTO hosts(name, mac, created, updated) VALUES('node1', '02:00:00:00:00:01', 0, 0)")
    await write(store, "INSERT INTO hosts(name, mac, ip, created, updated) "
                       "VALUES('node2', '02:00:00:00:00:02', ?, 0, 0)", (ip("10.0.0.2"),))
    await lease(store, "02:00:00:00:00:01", "10.0.0.101", "whatever", starts=990)
    await lease(store, "02:00:00:00:00:66", "10.0.0.166", "node1", starts=100)  # earlier, still refused
    await lease(store, "02:00:00:00:00:67", "10.0.0.167", "NODE2")
    index = NameIndex(store.reader)
    assert names(index) == [("node2", "10.0.0.2", "host"), ("node1", "10.0.0.101", "host")]
    assert {(r.mac, r.reason) for r in index.snapshot(1000.0).refused} == {
        ("02:00:00:00:00:66", "host-name"), ("02:00:00:00:00:67", "host-name")}


async def test_reserved_and_own_names_are_refused_to_clients(store: Store) -> None:
    for i, name in enumerate(("localhost", "WPAD", "isatap", "imageserver", "-bad-", "ok")):
        await lease(store, f"02:00:00:00:01:0{i}", f"10.0.0.{110 + i}", name)
    index = NameIndex(store.reader, reserved=("imageserver",))
    assert names(index) == [("ok", "10.0.0.115", "lease")]
    assert [r.reason for r in index.snapshot(1000.0).refused] == ["reserved"] * 4 + ["invalid"]


async def test_a_dynamic_name_is_freed_when_its_lease_ends(store: Store) -> None:
    await lease(store, "02:00:00:00:00:01", "10.0.0.101", "dyn", starts=900)
    await lease(store, "02:00:00:00:00:02", "10.0.0.102", "dyn", starts=950)
    index = NameIndex(store.reader)
    assert names(index) == [("dyn", "10.0.0.101", "lease")]
    await write(store, "UPDATE leases SET expires = 1000 WHERE mac = '02:00:00:00:00:01'")
    assert names(index) == [("dyn", "10.0.0.102", "lease")]


async def test_rows_with_broken_addresses_are_skipped(store: Store) -> None:
    await write(store, "INSERT INTO hosts(name, ip, created, updated) VALUES('broken', ?, 0, 0)", (2**40,))
    await write(store, "INSERT INTO hosts(name, ip, created, updated) VALUES('fine', ?, 0, 0)", (ip("10.0.0.7"),))
    assert names(NameIndex(store.reader)) == [("fine", "10.0.0.7", "host")]
