"""state.sightings: the machine table is capped; unknown machines expire and make room, hosts never do."""

from __future__ import annotations

import sqlite3
from typing import Any

from state.db import migrate
from state.hosts import hosts_among, is_host
from state.sightings import MachineLog
from state.writeback import WriteBack


def conn() -> sqlite3.Connection:
    c = sqlite3.connect(":memory:", isolation_level=None)
    migrate(c)
    return c


def stored(c: sqlite3.Connection) -> set[str]:
    return {r[0] for r in c.execute("SELECT mac FROM machines")}


def mac(i: int) -> str:
    return f"02:00:00:00:{i >> 8:02x}:{i & 0xff:02x}"


def test_a_flood_of_new_macs_stays_at_the_cap_in_memory_and_in_the_store() -> None:
    c = conn()
    hosts = {mac(0), mac(1)}
    log = MachineLog(WriteBack(conn=c), cap=10, protected=hosts.__contains__)
    for i in range(200):
        log.seen(mac(i), 1000.0 + i)
    assert len(log) == 10 and len(stored(c)) == 10
    assert hosts <= stored(c)  # hosts seen first are still there
    assert stored(c) == {m.mac for m in log.all()}
    assert {mac(i) for i in range(192, 200)} <= stored(c)  # the newest unknown ones
    assert log.evicted == 190


def test_the_least_recently_seen_unknown_machine_makes_room() -> None:
    c = conn()
    log = MachineLog(WriteBack(conn=c), cap=3)
    for i in range(3):
        log.seen(mac(i), 1000.0 + i)
    log.seen(mac(0), 1010.0)  # seen again: now the most recent
    log.seen(mac(9), 1011.0)
    assert stored(c) == {mac(0), mac(2), mac(9)}


def test_unknown_machines_expire_and_a_table_full_of_hosts_records_no_stranger() -> None:
    c = conn()
    hosts = {mac(1), mac(2)}
    log = MachineLog(WriteBack(conn=c), cap=2, expiry=100.0, protected=hosts.__contains__)
    log.seen(mac(1), 1000.0)
    log.seen(mac(2), 1000.0)
    m = log.seen(mac(3), 2000.0)  # answered (returned), not recorded
    assert m.mac == mac(3) and log.get(mac(3)) is None and stored(c) == hosts and log.unrecorded == 1
    log.seen(mac(4), 2000.0)
    assert stored(c) == hosts  # hosts never expire either
    big = MachineLog(WriteBack(conn=c), cap=10, expiry=100.0)
    big.seen(mac(5), 2000.0)
    big.seen(mac(6), 2100.0)
    big.expire(2150.0)
    assert big.get(mac(5)) is None and big.get(mac(6)) is not None


def test_loading_cuts_an_oversized_table_down_to_the_cap() -> None:
    c = conn()
    writer: Any = WriteBack(conn=c)
    log = MachineLog(writer, cap=1000)
    for i in range(50):
        log.seen(mac(i), 1000.0 + i)
    again = MachineLog.load(c, writer, cap=5, protected={mac(0)}.__contains__, now=1100.0)
    assert len(again) == 5 and stored(c) == {mac(0), *(mac(i) for i in range(46, 50))}


def test_evicted_and_re_seen_in_one_commit_ends_as_the_last_row_says() -> None:
    from state.sightings import _write_machines

    c = conn()
    row = (mac(1), 1.0, 2.0, None, None, None, None, None, None, None)
    _write_machines(c, [row, (mac(1), *(None,) * 9), row])
    assert stored(c) == {mac(1)}
    _write_machines(c, [row, (mac(1), *(None,) * 9)])
    assert stored(c) == set()


def test_a_machine_in_the_hosts_table_is_never_evicted_with_is_host_as_the_check() -> None:
    # The daemon's wiring: protected = is_host over the store (one SELECT 1 per eviction candidate).
    c = conn()
    c.execute("INSERT INTO hosts(name, mac, state, created, updated) VALUES ('node1', ?, 'new', 0, 0)", (mac(0),))
    assert is_host(c, mac(0)) and not is_host(c, mac(1))
    log = MachineLog(WriteBack(conn=c), cap=3, protected=lambda m: is_host(c, m))
    for i in range(50):
        log.seen(mac(i), 1000.0 + i)
    assert mac(0) in stored(c) and len(stored(c)) == 3


def test_a_repeated_sighting_keeps_what_is_known_and_a_new_detail_still_lands() -> None:
    # The per-packet shortcut (details equal to what is known, or none told) must not hide a change.
    c = conn()
    log = MachineLog(WriteBack(conn=c), refresh=60.0)
    log.seen(mac(1), 1000.0, arch=7, relay="10.0.0.1")
    again = log.seen(mac(1), 1001.0, arch=7, relay="10.0.0.1")
    assert (again.arch, again.relay, again.last_seen) == (7, "10.0.0.1", 1001.0)
    assert log.seen(mac(1), 1002.0).arch == 7  # nothing told: kept
    changed = log.seen(mac(1), 1003.0, arch=7, relay="10.0.0.2")
    assert changed.relay == "10.0.0.2"
    assert c.execute("SELECT relay FROM machines WHERE mac = ?", (mac(1),)).fetchone()[0] == "10.0.0.2"


def test_a_full_big_table_makes_room_for_a_batch_and_asks_which_are_hosts_once_per_batch() -> None:
    c = conn()
    c.execute("INSERT INTO hosts(name, mac, state, created, updated) VALUES ('h0', ?, 'new', 0, 0), "
              "('h5', ?, 'new', 0, 0)", (mac(0), mac(5)))
    asked: list[list[str]] = []

    def among(macs: list[str]) -> list[str]:
        asked.append(macs)
        return hosts_among(c, macs)

    log = MachineLog(WriteBack(conn=c), cap=640, protected=lambda m: is_host(c, m), hosts_among=among)
    for i in range(640):
        log.seen(mac(i), 1000.0 + i)
    assert not asked and len(log) == 640
    log.seen(mac(1000), 2000.0)  # full: the 10 least recently seen unknown ones make room (cap / 64)
    assert [len(macs) for macs in asked] == [10, 2]  # 2 of the first 10 are hosts: 2 more looked at
    assert len(log) == 640 - 10 + 1 and log.evicted == 10
    assert {mac(0), mac(5)} <= stored(c) and mac(11) not in stored(c) and mac(12) in stored(c)
    for i in range(9):  # room for 9 more without another eviction (or question)
        log.seen(mac(2000 + i), 3000.0 + i)
    assert len(asked) == 2 and len(log) == 640 and stored(c) == {m.mac for m in log.all()}
